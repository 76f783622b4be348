// A TCP forwarder on 127.0.0.1 for tests that need a connection to drop: clients connect
// to port(), each connection is relayed to the target, and DropConnections() cuts every
// open one while the proxy keeps accepting new ones.
#ifndef GRADLAB_TESTS_TESTING_TCP_PROXY_H_
#define GRADLAB_TESTS_TESTING_TCP_PROXY_H_

#include <atomic>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace gradlab {

class TcpProxy {
 public:
  explicit TcpProxy(int target_port);
  ~TcpProxy();

  int port() const { return port_; }
  // Connections accepted so far.
  int connections() const { return connections_.load(); }
  void DropConnections() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void AcceptLoop();
  static void Relay(int from, int to);

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::thread acceptor_;
  absl::Mutex mu_;
  std::vector<int> open_fds_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> relays_ ABSL_GUARDED_BY(mu_);
};

}  // namespace gradlab

#endif  // GRADLAB_TESTS_TESTING_TCP_PROXY_H_
