// The protobuf JSON mapping as gradlab writes it everywhere (the CLI's --json, the HTTP
// API, reports): lowerCamelCase names, enums by name, int64 as strings, and every field
// present, zeros included, so that readers need no defaults of their own.
#ifndef GRADLAB_COMMON_PROTO_JSON_H_
#define GRADLAB_COMMON_PROTO_JSON_H_

#include <google/protobuf/message.h>

#include <string>

namespace gradlab {

// One line, no trailing newline.
std::string ToJson(const google::protobuf::Message& message);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_PROTO_JSON_H_
