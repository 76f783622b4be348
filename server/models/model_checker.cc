#include "server/models/model_checker.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/engine/torchscript_check.h"

extern char** environ;

namespace gradlab {
namespace {

// The helper's output is our own serialization; anything larger is not.
constexpr size_t kMaxHelperOutput = size_t{64} << 20;
constexpr int kExitRefused = 3;

absl::Status ErrnoError(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// Reads `fd` until it closes, `deadline` passes or kMaxHelperOutput is exceeded; false
// when it did not close in time.
bool ReadUntilClosed(int fd, absl::Time deadline, std::string& out) {
  char buffer[1 << 16];
  while (out.size() <= kMaxHelperOutput) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd poll_fd{fd, POLLIN, 0};
    const int ready = poll(&poll_fd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return true;
    out.append(buffer, static_cast<size_t>(n));
  }
  return true;
}

// waitpid until `deadline`; the status, or nullopt when the child is still running.
std::optional<int> WaitUntil(pid_t pid, absl::Time deadline) {
  while (true) {
    int status = 0;
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) return status;
    if (done < 0 && errno != EINTR) return std::nullopt;
    if (absl::Now() >= deadline) return std::nullopt;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

v1::ModelArtifact ToProto(const TorchScriptReport& report) {
  v1::ModelArtifact artifact;
  artifact.set_parameter_count(report.parameter_count);
  for (const TorchScriptParameter& parameter : report.parameters) {
    v1::ModelParameter& out = *artifact.add_parameters();
    out.set_name(parameter.name);
    out.mutable_shape()->Add(parameter.shape.begin(), parameter.shape.end());
  }
  for (const DatasetFit& fit : report.datasets) {
    v1::DatasetFit& out = *artifact.add_datasets();
    out.set_dataset(fit.dataset);
    out.set_fits(fit.fits);
    out.set_reason(fit.reason);
  }
  return artifact;
}

}  // namespace

absl::StatusOr<v1::ModelArtifact> CheckModelInHelper(const std::string& helper,
                                                     const std::string& path,
                                                     const ModelCheckLimits& limits) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return ErrnoError("cannot make a pipe for the model check");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  std::vector<std::string> args = {
      helper, absl::StrCat("--check_model=", path),
      absl::StrCat("--check_model_memory_bytes=", limits.memory_bytes),
      absl::StrCat("--check_model_cpu_seconds=",
                   std::max<int64_t>(1, absl::ToInt64Seconds(limits.cpu_time)))};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  // One intra-op thread: the check is one small batch, and the CPU limit counts every thread.
  std::vector<std::string> env = {"OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1"};
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "OMP_NUM_THREADS=", 16) != 0 &&
        std::strncmp(*e, "MKL_NUM_THREADS=", 16) != 0) {
      env.emplace_back(*e);
    }
  }
  std::vector<char*> envp;
  for (std::string& variable : env) envp.push_back(variable.data());
  envp.push_back(nullptr);

  pid_t pid = -1;
  const int spawned =
      posix_spawn(&pid, helper.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (spawned != 0) {
    close(pipe_fds[0]);
    errno = spawned;
    return ErrnoError(absl::StrCat("cannot start the model check (", helper, ")"));
  }
  const absl::Time deadline = absl::Now() + limits.wall_time;
  std::string output;
  const bool closed = ReadUntilClosed(pipe_fds[0], deadline, output);
  close(pipe_fds[0]);
  std::optional<int> status = closed ? WaitUntil(pid, deadline) : std::nullopt;
  if (!status.has_value()) {
    kill(pid, SIGKILL);
    int ignored = 0;
    waitpid(pid, &ignored, 0);
    return absl::InvalidArgumentError(absl::StrCat("checking the module took more than ",
                                                   absl::FormatDuration(limits.wall_time),
                                                   ": does its forward loop for ever?"));
  }
  if (WIFEXITED(*status) && WEXITSTATUS(*status) == 0) {
    v1::ModelArtifact artifact;
    if (output.size() > kMaxHelperOutput || !artifact.ParseFromString(output)) {
      return absl::InternalError("the model check's answer is not a ModelArtifact");
    }
    return artifact;
  }
  if (WIFEXITED(*status) && WEXITSTATUS(*status) == kExitRefused) {
    return absl::InvalidArgumentError(output.substr(0, 2000));
  }
  if (WIFSIGNALED(*status) && (WTERMSIG(*status) == SIGXCPU || WTERMSIG(*status) == SIGKILL)) {
    return absl::InvalidArgumentError(
        absl::StrCat("checking the module used more than ", absl::FormatDuration(limits.cpu_time),
                     " of CPU time: does its forward loop for ever?"));
  }
  if (WIFSIGNALED(*status)) {
    return absl::InvalidArgumentError(
        absl::StrCat("loading or running the module crashed the checker (",
                     strsignal(WTERMSIG(*status)), "): the file is damaged, or needs more than ",
                     limits.memory_bytes >> 20, " MiB of address space"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("the model check failed (exit code ", WEXITSTATUS(*status),
                   "): the file is damaged, or the module needs more than ",
                   limits.memory_bytes >> 20, " MiB of address space"));
}

int RunModelCheckHelper(const std::string& path, int64_t memory_bytes, int cpu_seconds) {
  const rlimit memory{static_cast<rlim_t>(memory_bytes), static_cast<rlim_t>(memory_bytes)};
  const rlimit cpu{static_cast<rlim_t>(cpu_seconds), static_cast<rlim_t>(cpu_seconds) + 1};
  const rlimit no_core{0, 0};
  if (setrlimit(RLIMIT_AS, &memory) != 0 || setrlimit(RLIMIT_CPU, &cpu) != 0 ||
      setrlimit(RLIMIT_CORE, &no_core) != 0) {
    std::cerr << "gradlabd --check_model: cannot limit itself: " << std::strerror(errno) << "\n";
    return 1;
  }
  absl::StatusOr<TorchScriptReport> report = CheckTorchScript(path);
  if (!report.ok()) {
    std::cout << report.status().message() << std::flush;
    return kExitRefused;
  }
  const std::string serialized = ToProto(*report).SerializeAsString();
  std::cout.write(serialized.data(), static_cast<std::streamsize>(serialized.size()));
  std::cout.flush();
  return std::cout ? 0 : 1;
}

}  // namespace gradlab
