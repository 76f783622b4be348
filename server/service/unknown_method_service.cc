#include "server/service/unknown_method_service.h"

#include "absl/strings/str_cat.h"
#include "common/client_text.h"
#include "common/grpc_status.h"
#include "server/service/call_authorization.h"

namespace gradlab {
namespace {

// Ends the call at once with `status`, reading nothing.
class RefusingReactor : public grpc::ServerGenericBidiReactor {
 public:
  explicit RefusingReactor(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerGenericBidiReactor* UnknownMethodService::CreateReactor(
    grpc::GenericCallbackServerContext* context) {
  absl::Status status = AuthorizeCall(authorizer_, context, Role::kRead);
  if (status.ok()) {
    status = absl::UnimplementedError(
        absl::StrCat("gradlabd does not serve the method ", QuoteClientText(context->method()),
                     "; its services are listed by server reflection"));
  }
  return new RefusingReactor(status);
}

}  // namespace gradlab
