// The uploaded TorchScript models a server keeps: their files (ModelFiles, under the state
// folder's models/) and their records (the store's models table). An upload streams into a
// temporary file, is checked in the helper process (model_checker.h) and only then kept
// under its sha256. Thread-safe.
#ifndef GRADLAB_SERVER_MODELS_MODEL_REGISTRY_H_
#define GRADLAB_SERVER_MODELS_MODEL_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "gradlab/v1/experiment_service.pb.h"
#include "server/models/model_checker.h"
#include "server/store/experiment_store.h"
#include "server/store/model_files.h"

namespace gradlab {

struct ModelRegistryOptions {
  // gradlabd's own binary, run as the check's helper.
  std::string helper;
  ModelCheckLimits limits;
  int64_t max_model_bytes = int64_t{200} << 20;
  // The ids of the experiments (finished ones included) that train a model: DeleteModel
  // is refused while there are any.
  std::function<std::vector<std::string>(const std::string& model_id)> experiments_using;
};

class ModelRegistry;

// One upload in progress: the header's checks passed, chunks are appended as they arrive.
class ModelUploadSession {
 public:
  // RESOURCE_EXHAUSTED past the size limit or on a full disk.
  absl::Status Append(absl::string_view chunk);
  // Checks and keeps the file; the artifact, or why it is refused (nothing is kept then).
  absl::StatusOr<v1::ModelArtifact> Finish();

 private:
  friend class ModelRegistry;
  ModelUploadSession(ModelRegistry& registry, v1::UploadModelHeader header,
                     std::unique_ptr<ModelUpload> upload)
      : registry_(registry), header_(std::move(header)), upload_(std::move(upload)) {}

  ModelRegistry& registry_;
  const v1::UploadModelHeader header_;
  std::unique_ptr<ModelUpload> upload_;
};

class ModelRegistry {
 public:
  // Reads the stored records; removes what an interrupted upload left.
  static absl::StatusOr<std::unique_ptr<ModelRegistry>> Open(ExperimentStore& store,
                                                             ModelRegistryOptions options);

  // INVALID_ARGUMENT for a bad name or digest.
  absl::StatusOr<std::unique_ptr<ModelUploadSession>> BeginUpload(
      const v1::UploadModelHeader& header);
  // By id, or by the name it was last uploaded under (the newest upload of that name).
  absl::StatusOr<v1::ModelArtifact> Get(const std::string& id_or_name) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Newest first.
  std::vector<v1::ModelArtifact> List() const ABSL_LOCKS_EXCLUDED(mu_);
  // FAILED_PRECONDITION naming the experiments that use it.
  absl::Status Delete(const std::string& id_or_name) ABSL_LOCKS_EXCLUDED(mu_);
  // The file of a stored model, for training it.
  absl::StatusOr<std::string> FileOf(const std::string& id) const;

 private:
  friend class ModelUploadSession;
  ModelRegistry(ExperimentStore& store, ModelRegistryOptions options, std::string dir)
      : store_(store), options_(std::move(options)), files_(std::move(dir)) {}
  absl::StatusOr<v1::ModelArtifact> Keep(const v1::UploadModelHeader& header, ModelUpload& upload)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The newest artifact of that id or name; null if none.
  const StoredModel* FindLocked(const std::string& id_or_name) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  ExperimentStore& store_;
  const ModelRegistryOptions options_;
  const ModelFiles files_;
  // Checks run one at a time: each takes a core and up to its memory limit.
  absl::Mutex check_mu_;
  mutable absl::Mutex mu_;
  std::map<std::string, StoredModel> models_ ABSL_GUARDED_BY(mu_);  // by id
  int64_t last_ordinal_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_MODELS_MODEL_REGISTRY_H_
