// The protobuf JSON mapping as gradlab writes it everywhere (the CLI's --json, the HTTP
// API, reports): lowerCamelCase names, enums by name, int64 as strings, and every field
// present, zeros included, so that readers need no defaults of their own.
#ifndef GRADLAB_COMMON_PROTO_JSON_H_
#define GRADLAB_COMMON_PROTO_JSON_H_

#include <google/protobuf/message.h>

#include <string>

#include "absl/strings/string_view.h"

namespace gradlab {

// One line, no trailing newline.
std::string ToJson(const google::protobuf::Message& message);

// `text` as a JSON string literal, quoted and escaped: for building small JSON objects
// whose keys must come in a fixed order.
std::string JsonString(absl::string_view text);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_PROTO_JSON_H_
