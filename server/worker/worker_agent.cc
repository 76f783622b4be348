#include "server/worker/worker_agent.h"

#include <glog/logging.h>
#include <stdlib.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/client_text.h"
#include "common/experiment_spec.h"
#include "common/grpc_status.h"
#include "common/spec_proto.h"
#include "common/thread_priority.h"
#include "common/version.h"
#include "server/engine/dataset_request.h"
#include "server/engine/trainer.h"
#include "server/store/model_files.h"
#include "server/worker/remote_rendezvous_store.h"

namespace gradlab {
namespace {

constexpr absl::Duration kCallDeadline = absl::Seconds(10);
// A model of --max_model_bytes (200 MB by default) over a slow link.
constexpr absl::Duration kModelFetchDeadline = absl::Minutes(10);

}  // namespace

WorkerAgent::WorkerAgent(WorkerAgentOptions options)
    : options_(std::move(options)),
      model_dir_(options_.model_dir),
      stub_(v1::WorkerService::NewStub(
          grpc::CreateChannel(options_.coordinator, options_.credentials))) {
  if (model_dir_.empty()) {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "gradlab-worker-models-XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr) {
      model_dir_ = pattern;
      owns_model_dir_ = true;
    } else {
      LOG(WARNING) << "cannot make a folder for uploaded models in " << pattern << ": "
                   << std::strerror(errno) << "; runs of uploaded models will fail here";
    }
  }
}

WorkerAgent::~WorkerAgent() {
  Shutdown();
  if (rank_thread_.joinable()) rank_thread_.join();
  std::error_code error;
  if (owns_model_dir_) std::filesystem::remove_all(model_dir_, error);
}

std::unique_ptr<grpc::ClientContext> WorkerAgent::NewContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(kCallDeadline));
  if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
  return context;
}

void WorkerAgent::Run() {
  absl::Status last_error;  // logged once, not at every retry
  while (true) {
    v1::HeartbeatRequest heartbeat;
    {
      absl::MutexLock lock(&mu_);
      if (shutting_down_) break;
      heartbeat.set_worker_id(worker_id_);
      if (running_.has_value()) *heartbeat.mutable_running() = *running_;
      if (last_outcome_.has_value()) *heartbeat.mutable_last_outcome() = *last_outcome_;
      rank_ended_ = false;
    }
    absl::Duration pause = options_.retry_interval;
    if (heartbeat.worker_id().empty()) {
      v1::RegisterWorkerRequest request;
      request.set_name(options_.name);
      request.set_cpus(options_.cpus);
      request.set_threads_per_job(options_.threads_per_job);
      request.set_version(kGradlabVersion);
      request.set_address(options_.address);
      v1::RegisterWorkerResponse response;
      absl::Status status =
          FromGrpcStatus(stub_->RegisterWorker(NewContext().get(), request, &response));
      if (status.ok()) {
        LOG(INFO) << "registered with " << options_.coordinator << " as worker "
                  << response.worker_id() << ", reachable at " << response.address();
        absl::MutexLock lock(&mu_);
        worker_id_ = response.worker_id();
        known_address_ = response.address();
        heartbeat_interval_ = absl::Milliseconds(response.heartbeat_interval_ms());
        pause = absl::ZeroDuration();
      } else if (status != last_error) {
        LOG(WARNING) << "cannot register with the coordinator " << options_.coordinator << ": "
                     << status << " (trying again every "
                     << absl::FormatDuration(options_.retry_interval) << ")";
      }
      last_error = status;
    } else {
      v1::HeartbeatResponse response;
      absl::Status status =
          FromGrpcStatus(stub_->Heartbeat(NewContext().get(), heartbeat, &response));
      absl::MutexLock lock(&mu_);
      if (status.ok()) {
        if (!last_error.ok()) LOG(INFO) << "the coordinator answers again";
        if (response.stop_running() && running_.has_value()) {
          LOG(INFO) << "the coordinator gave up experiment " << running_->experiment_id()
                    << " attempt " << running_->attempt() << ": stopping rank " << running_->rank();
          rank_stop_.store(true);
        }
        if (response.has_assignment() && !running_.has_value()) StartRank(response.assignment());
        pause = heartbeat_interval_;
      } else if (absl::IsNotFound(status)) {
        LOG(WARNING) << status.message();
        worker_id_.clear();
        pause = absl::ZeroDuration();
      } else if (status != last_error) {
        LOG(WARNING) << "heartbeat to " << options_.coordinator << " failed: " << status;
      }
      last_error = status;
    }
    Pause(pause);
  }
  rank_stop_.store(true);
  if (rank_thread_.joinable()) rank_thread_.join();
}

void WorkerAgent::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutting_down_ = true;
  rank_stop_.store(true);
}

void WorkerAgent::Pause(absl::Duration duration) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(
                           +[](WorkerAgent* self) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                             return self->shutting_down_ || self->rank_ended_;
                           },
                           this),
                       duration);
}

void WorkerAgent::StartRank(const v1::RankAssignment& assignment) {
  // A rank started now would wait out the rendezvous before it saw the stop.
  if (shutting_down_) return;
  if (rank_thread_.joinable()) rank_thread_.join();  // the last one has ended
  LOG(INFO) << "experiment " << assignment.experiment_id() << " attempt " << assignment.attempt()
            << ": training rank " << assignment.rank() << " of " << assignment.world_size();
  running_ = assignment;
  rank_stop_.store(false);
  rank_thread_ = std::thread([this, assignment] {
    if (absl::Status lowered = LowerThisThreadsPriority(options_.training_niceness);
        !lowered.ok()) {
      LOG(WARNING) << lowered.message();
    }
    const absl::Status status = TrainAssignedRank(assignment);
    LOG(INFO) << "experiment " << assignment.experiment_id() << " attempt " << assignment.attempt()
              << ": rank " << assignment.rank() << " ended: " << status;
    absl::MutexLock lock(&mu_);
    v1::RankOutcome outcome;
    outcome.set_experiment_id(assignment.experiment_id());
    outcome.set_attempt(assignment.attempt());
    outcome.set_code(static_cast<int32_t>(status.code()));
    outcome.set_message(std::string(status.message()));
    last_outcome_ = std::move(outcome);
    running_.reset();
    rank_ended_ = true;
  });
}

absl::Status CheckAssignment(const v1::RankAssignment& assignment) {
  auto refuse = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("the coordinator's assignment for experiment ",
                                                   QuoteClientText(assignment.experiment_id()),
                                                   " is not one a worker can train: ", what));
  };
  absl::StatusOr<ExperimentSpec> spec = ResolveSpec(SpecFromProto(assignment.spec()));
  if (!spec.ok()) return refuse(spec.status().message());
  if (assignment.world_size() != spec->world_size || spec->world_size < 2) {
    return refuse(
        absl::StrCat("world_size ", assignment.world_size(), " for a spec of ", spec->world_size));
  }
  if (assignment.rank() < 1 || assignment.rank() >= assignment.world_size()) {
    return refuse(absl::StrCat("rank ", assignment.rank(), " is not in [1, ",
                               assignment.world_size() - 1, "]"));
  }
  if (assignment.timeout_ms() < 1) {
    return refuse(absl::StrCat("timeout_ms ", assignment.timeout_ms(), " is not positive"));
  }
  return absl::OkStatus();
}

absl::Status WorkerAgent::TrainAssignedRank(const v1::RankAssignment& assignment) {
  if (absl::Status checked = CheckAssignment(assignment); !checked.ok()) return checked;
  ExperimentSpec spec = SpecFromProto(assignment.spec());
  // The coordinator's folder first (machines set up alike), then this worker's own.
  std::vector<std::string> search_path = {spec.data_dir};
  for (std::string& folder : DatasetSearchPath(spec.dataset, "", options_.data_dir)) {
    search_path.push_back(std::move(folder));
  }
  absl::StatusOr<std::string> location = LocateDataset(spec.dataset, search_path);
  if (!location.ok()) {
    return absl::Status(location.status().code(), absl::StrCat("on worker ", options_.name, ": ",
                                                               location.status().message()));
  }
  spec.data_dir = *location;
  DatasetRequest request = DatasetRequestFor(spec);
  request.stop_requested = &rank_stop_;
  absl::StatusOr<std::shared_ptr<const Dataset>> dataset = LoadSharedDataset(request);
  if (!dataset.ok()) return dataset.status();

  ProcessGroupOptions group;
  std::string worker_id;
  {
    absl::MutexLock lock(&mu_);
    group.local_address = known_address_;
    worker_id = worker_id_;
  }
  group.store = std::make_shared<RemoteRendezvousStore>(
      stub_.get(), [this] { return NewContext(); }, worker_id, assignment.experiment_id(),
      assignment.attempt());
  group.store_name = "the coordinator " + options_.coordinator;
  group.rank = assignment.rank();
  group.world_size = assignment.world_size();
  group.timeout = absl::Milliseconds(assignment.timeout_ms());
  TrainingControl control;
  control.stop_requested = &rank_stop_;
  if (IsUploadedModel(spec.model)) {
    absl::StatusOr<std::string> model_file = ModelFile(assignment, worker_id);
    if (!model_file.ok()) {
      return absl::Status(
          model_file.status().code(),
          absl::StrCat("on worker ", options_.name, ": ", model_file.status().message()));
    }
    control.model_file = *std::move(model_file);
  }
  IgnoringSink sink;  // rank 0, on the coordinator, reports
  return TrainRank(spec, **dataset, group, control, sink);
}

absl::StatusOr<std::string> WorkerAgent::ModelFile(const v1::RankAssignment& assignment,
                                                   const std::string& worker_id) {
  const std::string id(UploadedModelReference(assignment.spec().model()));
  const ModelFiles files(model_dir_);
  absl::StatusOr<std::string> kept = files.PathOf(id);
  if (!kept.ok()) return kept.status();
  if (files.Verify(id).ok()) return kept;
  absl::StatusOr<std::unique_ptr<ModelUpload>> upload = files.BeginUpload();
  if (!upload.ok()) return upload.status();
  v1::FetchModelRequest request;
  request.set_worker_id(worker_id);
  request.set_experiment_id(assignment.experiment_id());
  request.set_attempt(assignment.attempt());
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(kModelFetchDeadline));
  std::unique_ptr<grpc::ClientReader<v1::ModelChunk>> reader =
      stub_->FetchModel(context.get(), request);
  v1::ModelChunk chunk;
  absl::Status written;
  while (written.ok() && reader->Read(&chunk)) written = (*upload)->Append(chunk.data());
  if (!written.ok()) context->TryCancel();
  const absl::Status fetched = FromGrpcStatus(reader->Finish());
  if (!written.ok()) return written;
  if (!fetched.ok()) {
    return absl::Status(fetched.code(), absl::StrCat("cannot fetch model ", id,
                                                     " from the coordinator: ", fetched.message()));
  }
  absl::StatusOr<std::string> digest = (*upload)->Finish();
  if (!digest.ok()) return digest.status();
  if (*digest != id) {
    return absl::DataLossError(absl::StrCat("the model fetched from the coordinator has sha256 ",
                                            *digest, ", not its id ", id));
  }
  return (*upload)->Keep();
}

}  // namespace gradlab
