#include "server/service/reflection_service.h"

#include <glog/logging.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

#include <memory>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "server/service/call_authorization.h"

namespace gradlab {

using google::protobuf::Descriptor;
using google::protobuf::DescriptorPool;
using google::protobuf::FieldDescriptor;
using google::protobuf::FileDescriptor;
using grpc::reflection::v1alpha::ServerReflectionRequest;
using grpc::reflection::v1alpha::ServerReflectionResponse;

// One client's stream: reads a request, writes its answer, reads the next; ends when the
// client closes its side. A request that names nothing the server knows is answered with
// an error_response (NOT_FOUND) and the stream goes on, as the protocol says.
class ReflectionService::Stream final
    : public grpc::ServerBidiReactor<ServerReflectionRequest, ServerReflectionResponse> {
 public:
  Stream(const ReflectionService& service, grpc::CallbackServerContext* context)
      : service_(service) {
    if (absl::Status allowed = AuthorizeCall(service.authorizer_, context, Role::kRead);
        !allowed.ok()) {
      LOG(WARNING) << "ServerReflectionInfo from " << context->peer()
                   << " refused: " << allowed.message();
      Finish(ToGrpcStatus(allowed));
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client closed its side (or went away)
      Finish(grpc::Status::OK);
      return;
    }
    response_.Clear();
    response_.set_valid_host(request_.host());
    *response_.mutable_original_request() = request_;
    Answer();
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  void Answer() {
    const DescriptorPool& pool = *DescriptorPool::generated_pool();
    switch (request_.message_request_case()) {
      case ServerReflectionRequest::kListServices:
        for (const std::string& name : service_.services_) {
          response_.mutable_list_services_response()->add_service()->set_name(name);
        }
        return;
      case ServerReflectionRequest::kFileByFilename:
        return SendFile(pool.FindFileByName(request_.file_by_filename()),
                        absl::StrCat("file ", request_.file_by_filename()));
      case ServerReflectionRequest::kFileContainingSymbol:
        return SendFile(pool.FindFileContainingSymbol(request_.file_containing_symbol()),
                        absl::StrCat("symbol ", request_.file_containing_symbol()));
      case ServerReflectionRequest::kFileContainingExtension: {
        const auto& extension = request_.file_containing_extension();
        const Descriptor* type = pool.FindMessageTypeByName(extension.containing_type());
        const FieldDescriptor* field =
            type == nullptr ? nullptr
                            : pool.FindExtensionByNumber(type, extension.extension_number());
        return SendFile(field == nullptr ? nullptr : field->file(),
                        absl::StrCat("extension ", extension.extension_number(), " of ",
                                     extension.containing_type()));
      }
      case ServerReflectionRequest::kAllExtensionNumbersOfType: {
        const Descriptor* type =
            pool.FindMessageTypeByName(request_.all_extension_numbers_of_type());
        if (type == nullptr) {
          return NotFound(absl::StrCat("type ", request_.all_extension_numbers_of_type()));
        }
        std::vector<const FieldDescriptor*> extensions;
        pool.FindAllExtensions(type, &extensions);
        auto* numbers = response_.mutable_all_extension_numbers_response();
        numbers->set_base_type_name(type->full_name());
        for (const FieldDescriptor* field : extensions)
          numbers->add_extension_number(field->number());
        return;
      }
      case ServerReflectionRequest::MESSAGE_REQUEST_NOT_SET:
        break;
    }
    auto* error = response_.mutable_error_response();
    error->set_error_code(grpc::StatusCode::INVALID_ARGUMENT);
    error->set_error_message(
        "the request asks nothing: set one of file_by_filename, file_containing_symbol, "
        "file_containing_extension, all_extension_numbers_of_type or list_services");
  }

  // `file` first, then every file it imports, transitively, each once (as gRPC's own
  // reflection answers: a client needs them all to build the file's descriptors).
  void SendFile(const FileDescriptor* file, const std::string& what) {
    if (file == nullptr) return NotFound(what);
    absl::flat_hash_set<const FileDescriptor*> sent;
    std::vector<const FileDescriptor*> pending = {file};
    while (!pending.empty()) {
      const FileDescriptor* next = pending.back();
      pending.pop_back();
      if (!sent.insert(next).second) continue;
      google::protobuf::FileDescriptorProto proto;
      next->CopyTo(&proto);
      proto.SerializeToString(
          response_.mutable_file_descriptor_response()->add_file_descriptor_proto());
      for (int i = next->dependency_count() - 1; i >= 0; --i) {
        pending.push_back(next->dependency(i));
      }
    }
  }

  void NotFound(const std::string& what) {
    auto* error = response_.mutable_error_response();
    error->set_error_code(grpc::StatusCode::NOT_FOUND);
    error->set_error_message(absl::StrCat(what, " is not known to this server"));
  }

  const ReflectionService& service_;
  ServerReflectionRequest request_;
  ServerReflectionResponse response_;
};

grpc::ServerBidiReactor<ServerReflectionRequest, ServerReflectionResponse>*
ReflectionService::ServerReflectionInfo(grpc::CallbackServerContext* context) {
  return new Stream(*this, context);
}

}  // namespace gradlab
