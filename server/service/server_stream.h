// The base of every server-streaming reactor, so that gRPC's callback-API rules are kept
// in one place rather than by each stream:
//   - at most one write in flight;
//   - Finish exactly once, and never while a write is in flight: a cancel that comes
//     during one finishes the stream when the write is done;
//   - no write started after Finish;
//   - every StartWrite and Finish made under mu_, and mu_ taken by OnDone before the
//     stream is destroyed, so that no thread is still inside the stream then.
// A stream says what comes next in Next(), called under mu_ whenever it may write; a
// listener on another thread calls Advance() when there may be more to send.
#ifndef GRADLAB_SERVER_SERVICE_SERVER_STREAM_H_
#define GRADLAB_SERVER_SERVICE_SERVER_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "server/service/rpc_replies.h"

namespace gradlab {

template <typename Message>
class ServerStream : public grpc::ServerWriteReactor<Message> {
 public:
  void OnWriteDone(bool ok) final {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {  // the client has gone
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
    } else if (cancelled_) {
      FinishLocked(grpc::Status::CANCELLED);
    } else {
      AdvanceLocked();
    }
  }

  void OnCancel() final {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (!writing_) FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() final {
    Close();
    { absl::MutexLock lock(&mu_); }  // waits out an Advance() still inside the stream
    delete this;
  }

 protected:
  // What a stream does next: write a message (which must stay valid until the next call
  // of Next), finish with a status, or wait for the next Advance().
  struct Step {
    const Message* write = nullptr;
    std::optional<grpc::Status> finish;
  };
  static Step Send(const Message* message) { return Step{message, std::nullopt}; }
  static Step End(grpc::Status status) { return Step{nullptr, std::move(status)}; }
  static Step Wait() { return Step{}; }

  ~ServerStream() override = default;

  // Called under mu_ when no write is in flight and the stream has not finished.
  virtual Step Next() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  // Called once, when gRPC is done with the stream, before it is destroyed: stop the
  // listeners that call Advance() here (and wait for a running one to return).
  virtual void Close() {}

  // Asks Next() what to send unless a write is in flight or the stream has finished.
  // From any thread, including the derived class's constructor (gRPC holds what it
  // starts until the stream is bound).
  void Advance() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    AdvanceLocked();
  }

  absl::Mutex mu_;

 private:
  void AdvanceLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_) return;
    const Step step = Next();
    if (step.write != nullptr) {
      writing_ = true;
      this->StartWrite(step.write);
    } else if (step.finish.has_value()) {
      FinishLocked(*step.finish);
    }
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    grpc::ServerWriteReactor<Message>::Finish(status);
  }

  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

// A stream that ends at once with an error (bad request, unknown id).
template <typename Event>
class FailedStream : public ServerStream<Event> {
 public:
  FailedStream(const char* method, grpc::CallbackServerContext* context, absl::Status status)
      : status_(ToGrpcStatus(status)) {
    LogFailure(method, context, status_);
    this->Advance();
  }

 private:
  typename ServerStream<Event>::Step Next() override { return this->End(status_); }

  const grpc::Status status_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_SERVICE_SERVER_STREAM_H_
