// A gRPC call of any method path with an empty message, as a client that knows no .proto
// makes it (grpc::GenericStub): for tests of methods the server does not serve.
#ifndef GRADLAB_TESTS_TESTING_RAW_CALL_H_
#define GRADLAB_TESTS_TESTING_RAW_CALL_H_

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"

namespace gradlab {

// `method`: a full path, "/package.Service/Method"; `authorization`: the metadata's value
// (none when empty).
inline grpc::Status CallRawMethod(const std::shared_ptr<grpc::Channel>& channel,
                                  const std::string& method,
                                  const std::string& authorization = "") {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  if (!authorization.empty()) context.AddMetadata("authorization", authorization);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1), response;
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                 [&](grpc::Status finished) {
                   status = std::move(finished);
                   done.Notify();
                 });
  done.WaitForNotification();
  return status;
}

}  // namespace gradlab

#endif  // GRADLAB_TESTS_TESTING_RAW_CALL_H_
