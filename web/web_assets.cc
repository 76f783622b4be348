#include "web/web_assets.h"

#include <cstdlib>
#include <iostream>
#include <vector>

#include "absl/strings/match.h"

namespace gradlab {
namespace web_internal {
struct EmbeddedFile {
  const char* name;
  const char* data;
  size_t size;
};
extern const EmbeddedFile kEmbeddedFiles[];
extern const size_t kEmbeddedFileCount;
}  // namespace web_internal

namespace {

absl::string_view ContentType(absl::string_view name) {
  if (absl::EndsWith(name, ".html")) return "text/html; charset=utf-8";
  if (absl::EndsWith(name, ".css")) return "text/css; charset=utf-8";
  if (absl::EndsWith(name, ".js")) return "text/javascript; charset=utf-8";
  return "application/octet-stream";
}

const std::vector<WebAsset>& Assets() {
  static const std::vector<WebAsset>* const assets = [] {
    auto* list = new std::vector<WebAsset>();
    for (size_t i = 0; i < web_internal::kEmbeddedFileCount; ++i) {
      const web_internal::EmbeddedFile& file = web_internal::kEmbeddedFiles[i];
      list->push_back({file.name, ContentType(file.name), {file.data, file.size}});
    }
    return list;
  }();
  return *assets;
}

}  // namespace

const WebAsset* FindWebAsset(absl::string_view name) {
  for (const WebAsset& asset : Assets()) {
    if (asset.name == name) return &asset;
  }
  return nullptr;
}

absl::string_view WebAssetContent(absl::string_view name) {
  const WebAsset* asset = FindWebAsset(name);
  if (asset == nullptr) {
    std::cerr << "gradlab: no web asset \"" << name << "\" was compiled in\n";
    std::abort();
  }
  return asset->content;
}

}  // namespace gradlab
