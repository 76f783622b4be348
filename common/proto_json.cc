#include "common/proto_json.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

namespace gradlab {

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string text;
  // Fails only for messages with unresolvable Any fields, which gradlab's API has none of.
  (void)google::protobuf::util::MessageToJsonString(message, &text, options);
  return text;
}

std::string JsonString(absl::string_view text) {
  google::protobuf::Value value;
  value.set_string_value(std::string(text));
  return ToJson(value);
}

}  // namespace gradlab
