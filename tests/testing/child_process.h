// Runs a real binary of ours (gradlabd, gradlab) as a child process for end-to-end
// tests: its stdout is read line by line with a deadline, its stderr is collected, it
// can be signalled, and its exit is awaited with a deadline.
#ifndef GRADLAB_TESTS_TESTING_CHILD_PROCESS_H_
#define GRADLAB_TESTS_TESTING_CHILD_PROCESS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace gradlab {

class ChildProcess {
 public:
  // Starts `argv[0]` with `argv`, and `env` added to this process's environment (replacing
  // what it has under the same names).
  static absl::StatusOr<ChildProcess> Start(const std::vector<std::string>& argv,
                                            const std::vector<std::string>& env = {});
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&&) = delete;
  // Kills the child if it is still running.
  ~ChildProcess();

  // The next whole line of stdout (without its newline); DEADLINE_EXCEEDED or
  // OUT_OF_RANGE (end of output).
  absl::StatusOr<std::string> ReadLine(absl::Duration timeout);
  // Reads stdout lines until one contains `text`; returns that line.
  absl::StatusOr<std::string> ReadLineContaining(const std::string& text, absl::Duration timeout);
  // Everything left on stdout, until the child closes it.
  std::string ReadAll(absl::Duration timeout);

  void Signal(int signal_number);
  // The exit code (128 + signal when killed by one), or nullopt if it did not exit in time.
  std::optional<int> Wait(absl::Duration timeout);
  pid_t pid() const { return pid_; }

 private:
  ChildProcess(pid_t pid, int stdout_fd) : pid_(pid), stdout_fd_(stdout_fd) {}
  bool FillBuffer(absl::Time deadline);

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string buffer_;
  bool stdout_closed_ = false;
  std::optional<int> exit_code_;
};

// Runs a command to completion and returns its exit code and stdout.
struct CommandResult {
  int exit_code = -1;
  std::string out;
};
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::vector<std::string>& env = {},
                         absl::Duration timeout = absl::Seconds(120));

// A TCP port no one listens on now on this machine (for a process that binds it a
// moment later).
int FreeTcpPort();

// A port this process listens on, on every interface, for tests that a port in use is
// refused. It sets SO_REUSEADDR and SO_REUSEPORT, as lenient as a socket can be: another
// socket can share it only by setting SO_REUSEPORT too. Closed when destroyed.
class HeldTcpPort {
 public:
  static absl::StatusOr<HeldTcpPort> Listen();
  HeldTcpPort(HeldTcpPort&& other) noexcept : fd_(other.fd_), port_(other.port_) {
    other.fd_ = -1;
  }
  HeldTcpPort& operator=(HeldTcpPort&&) = delete;
  ~HeldTcpPort();

  int port() const { return port_; }

 private:
  HeldTcpPort(int fd, int port) : fd_(fd), port_(port) {}

  int fd_;
  int port_;
};

}  // namespace gradlab

#endif  // GRADLAB_TESTS_TESTING_CHILD_PROCESS_H_
