#include "server/models/model_registry.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "server/store/store_format.h"

namespace gradlab {
namespace {

constexpr size_t kMaxNameLength = 64;

// Why `name` cannot name a model, or "".
std::string NameProblem(const std::string& name) {
  if (name.empty() || name.size() > kMaxNameLength ||
      !std::all_of(name.begin(), name.end(), [](char c) {
        return absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.';
      })) {
    return absl::StrCat("name \"", name.substr(0, kMaxNameLength),
                        name.size() > kMaxNameLength ? "..." : "",
                        "\": a model's name is 1 to 64 letters, digits, '-', '_' and '.'");
  }
  if (IsSha256Hex(name)) {
    return absl::StrCat("name \"", name, "\" looks like a model's id (a sha256): choose another");
  }
  return "";
}

}  // namespace

absl::Status ModelUploadSession::Append(absl::string_view chunk) {
  if (upload_->size() + static_cast<int64_t>(chunk.size()) > registry_.options_.max_model_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the model is larger than this server takes (--max_model_bytes=",
                     registry_.options_.max_model_bytes, ")"));
  }
  return upload_->Append(chunk);
}

absl::StatusOr<v1::ModelArtifact> ModelUploadSession::Finish() {
  return registry_.Keep(header_, *upload_);
}

absl::StatusOr<std::unique_ptr<ModelRegistry>> ModelRegistry::Open(ExperimentStore& store,
                                                                   ModelRegistryOptions options) {
  auto registry = std::unique_ptr<ModelRegistry>(new ModelRegistry(
      store, std::move(options), (std::filesystem::path(store.state_dir()) / "models").string()));
  absl::StatusOr<std::vector<StoredModel>> stored = store.LoadModels();
  if (!stored.ok()) return stored.status();
  registry->files_.RemoveLeftovers();
  absl::MutexLock lock(&registry->mu_);
  for (StoredModel& model : *stored) {
    registry->last_ordinal_ = std::max(registry->last_ordinal_, model.ordinal);
    registry->models_[model.record.id()] = std::move(model);
  }
  return registry;
}

absl::StatusOr<std::unique_ptr<ModelUploadSession>> ModelRegistry::BeginUpload(
    const v1::UploadModelHeader& header) {
  if (std::string problem = NameProblem(header.name()); !problem.empty()) {
    return absl::InvalidArgumentError(problem);
  }
  v1::UploadModelHeader normalized = header;
  normalized.set_sha256(absl::AsciiStrToLower(header.sha256()));
  if (!IsSha256Hex(normalized.sha256())) {
    return absl::InvalidArgumentError(absl::StrCat("sha256 \"", header.sha256().substr(0, 80),
                                                   "\": the header must give the file's sha256 in "
                                                   "hex (64 of 0-9 and a-f; sha256sum prints it)"));
  }
  absl::StatusOr<std::unique_ptr<ModelUpload>> upload = files_.BeginUpload();
  if (!upload.ok()) return upload.status();
  return std::unique_ptr<ModelUploadSession>(
      new ModelUploadSession(*this, std::move(normalized), *std::move(upload)));
}

absl::StatusOr<v1::ModelArtifact> ModelRegistry::Keep(const v1::UploadModelHeader& header,
                                                      ModelUpload& upload) {
  if (upload.size() == 0) return absl::InvalidArgumentError("the upload has no bytes");
  absl::StatusOr<std::string> digest = upload.Finish();
  if (!digest.ok()) return digest.status();
  if (*digest != header.sha256()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the ", upload.size(), " bytes received have sha256 ", *digest, ", not the ",
        header.sha256(), " the header gave: the file changed or the upload was cut short"));
  }
  v1::ModelArtifact artifact;
  {
    absl::ReaderMutexLock lock(&mu_);
    if (auto known = models_.find(*digest); known != models_.end()) {
      artifact = known->second.record;  // the same bytes: checked already
    }
  }
  if (artifact.id().empty()) {
    absl::MutexLock one_check(&check_mu_);
    absl::StatusOr<v1::ModelArtifact> checked =
        CheckModelInHelper(options_.helper, upload.temporary_path(), options_.limits);
    if (!checked.ok()) return checked.status();
    artifact = *std::move(checked);
    artifact.set_id(*digest);
    artifact.set_size_bytes(upload.size());
    *artifact.mutable_created_time() =
        google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::GetCurrentTimeNanos());
    if (absl::StatusOr<std::string> kept = upload.Keep(); !kept.ok()) return kept.status();
  }
  artifact.set_name(header.name());
  absl::MutexLock lock(&mu_);
  StoredModel stored;
  stored.ordinal = ++last_ordinal_;  // the newest of its name from now on
  stored.record = artifact;
  if (absl::Status saved = store_.SaveModel(stored); !saved.ok()) {
    if (models_.count(artifact.id()) == 0) (void)files_.Remove(artifact.id());
    return saved;
  }
  models_[artifact.id()] = std::move(stored);
  return artifact;
}

const StoredModel* ModelRegistry::FindLocked(const std::string& id_or_name) const {
  if (auto by_id = models_.find(absl::AsciiStrToLower(id_or_name)); by_id != models_.end()) {
    return &by_id->second;
  }
  const StoredModel* newest = nullptr;
  for (const auto& [id, model] : models_) {
    if (model.record.name() == id_or_name &&
        (newest == nullptr || model.ordinal > newest->ordinal)) {
      newest = &model;
    }
  }
  return newest;
}

absl::StatusOr<v1::ModelArtifact> ModelRegistry::Get(const std::string& id_or_name) const {
  absl::ReaderMutexLock lock(&mu_);
  const StoredModel* model = FindLocked(id_or_name);
  if (model == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("no model with id or name \"", id_or_name.substr(0, 80), "\""));
  }
  return model->record;
}

std::vector<v1::ModelArtifact> ModelRegistry::List() const {
  std::vector<const StoredModel*> newest_first;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [id, model] : models_) newest_first.push_back(&model);
  std::sort(newest_first.begin(), newest_first.end(),
            [](const StoredModel* a, const StoredModel* b) { return a->ordinal > b->ordinal; });
  std::vector<v1::ModelArtifact> artifacts;
  for (const StoredModel* model : newest_first) artifacts.push_back(model->record);
  return artifacts;
}

absl::Status ModelRegistry::Delete(const std::string& id_or_name) {
  absl::MutexLock lock(&mu_);
  const StoredModel* model = FindLocked(id_or_name);
  if (model == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("no model with id or name \"", id_or_name.substr(0, 80), "\""));
  }
  const std::string id = model->record.id();
  if (options_.experiments_using) {
    if (std::vector<std::string> users = options_.experiments_using(id); !users.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("model ", id, " is trained by ", users.size(), " experiment",
                       users.size() == 1 ? "" : "s", " (", absl::StrJoin(users, ", "),
                       "): delete them first; their records name it"));
    }
  }
  if (absl::Status deleted = store_.DeleteModel(id); !deleted.ok()) return deleted;
  models_.erase(id);
  return files_.Remove(id);
}

absl::StatusOr<std::string> ModelRegistry::FileOf(const std::string& id) const {
  return files_.PathOf(id);
}

}  // namespace gradlab
