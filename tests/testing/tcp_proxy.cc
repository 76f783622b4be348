#include "tests/testing/tcp_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace gradlab {
namespace {

sockaddr_in Loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

}  // namespace

TcpProxy::TcpProxy(int target_port) : target_port_(target_port) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address = Loopback(0);
  bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  listen(listen_fd_, 16);
  socklen_t length = sizeof(address);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
  port_ = ntohs(address.sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

TcpProxy::~TcpProxy() {
  stopping_ = true;
  shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  close(listen_fd_);
  DropConnections();
  std::vector<std::thread> relays;
  {
    absl::MutexLock lock(&mu_);
    relays.swap(relays_);
  }
  for (std::thread& relay : relays) relay.join();
}

void TcpProxy::AcceptLoop() {
  while (!stopping_) {
    pollfd fd{listen_fd_, POLLIN, 0};
    if (poll(&fd, 1, 100) <= 0) continue;
    const int client = accept(listen_fd_, nullptr, nullptr);
    if (client < 0) continue;
    const int server = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in target = Loopback(target_port_);
    if (connect(server, reinterpret_cast<sockaddr*>(&target), sizeof(target)) != 0) {
      close(client);
      close(server);
      continue;
    }
    ++connections_;
    absl::MutexLock lock(&mu_);
    open_fds_.push_back(client);
    open_fds_.push_back(server);
    relays_.emplace_back([client, server] { Relay(client, server); });
    relays_.emplace_back([client, server] { Relay(server, client); });
  }
}

void TcpProxy::Relay(int from, int to) {
  char buffer[16384];
  while (true) {
    const ssize_t n = read(from, buffer, sizeof(buffer));
    if (n <= 0) break;
    // MSG_NOSIGNAL: a peer that has gone must not kill the test with SIGPIPE.
    if (send(to, buffer, n, MSG_NOSIGNAL) != n) break;
  }
  shutdown(to, SHUT_RDWR);
}

void TcpProxy::DropConnections() {
  absl::MutexLock lock(&mu_);
  // shutdown() wakes the relays' reads; the descriptors are closed with the proxy.
  for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);
}

}  // namespace gradlab
