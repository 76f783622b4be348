// The commands of the `gradlab` CLI, over a gRPC channel to gradlabd. Each returns the
// process's exit code (see ExitCode) and writes to the streams it is given, so that the
// real binary's behaviour is also what the tests drive.
#ifndef GRADLAB_CLIENT_CLI_H_
#define GRADLAB_CLIENT_CLI_H_

#include <grpcpp/grpcpp.h>

#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/tls_files.h"
#include "gradlab/v1/experiment_service.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace gradlab {

// Documented in `gradlab --help`.
enum ExitCode {
  kExitOk = 0,
  kExitRunNotSucceeded = 1,  // the experiment ended FAILED or CANCELLED; server not serving
  kExitUsage = 2,            // bad command, flag or argument
  kExitRefused = 3,          // the server refused the request (invalid spec, unknown id, ...)
  kExitUnreachable = 4,      // cannot reach gradlabd
  kExitError = 5,            // any other error
};

struct CliOptions {
  std::string server = "127.0.0.1:50051";
  bool json = false;                           // one protobuf-JSON object per line
  absl::Duration timeout = absl::Seconds(10);  // for unary calls
  // How long watch keeps trying to reconnect a dropped stream.
  absl::Duration reconnect_timeout = absl::Seconds(60);
  bool interactive = false;  // stdout is a terminal: draw progress bars
  // TLS to the server (--tls_ca, --tls_cert, --tls_key): roots to verify it with (empty:
  // the system's), and a client certificate for mutual TLS.
  bool tls = false;
  TlsPem tls_pem;
  // Sent with every call as "authorization: Bearer TOKEN" (--token, $GRADLAB_TOKEN).
  std::string token;
};

class Cli {
 public:
  Cli(CliOptions options, std::ostream& out, std::ostream& err);

  int Submit(const v1::StartExperimentRequest& request, bool follow);
  int List(v1::ExperimentState state, int limit);
  int Get(const std::string& id);
  int Cancel(const std::string& id);
  int Delete(const std::string& id);
  // Writes the exported model to `path` (through a temporary file, so that a failed
  // export leaves no partial file behind).
  int Export(const std::string& id, v1::ExportModelRequest::Which which,
             v1::ExportModelRequest::Format format, const std::string& path);
  int Watch(const std::string& id);
  // `step`: the first snapshot at or after it; otherwise the latest one.
  int Grads(const std::string& id, std::optional<int64_t> step, const std::string& layers,
            bool follow);
  // What the model predicted at `epoch` (0: initialisation), or at the latest epoch that
  // has predictions.
  int Preds(const std::string& id, std::optional<int> epoch);
  // Submits `base` once per model (or follows `ids`), shows their progress, then the table.
  int Compare(const std::vector<std::string>& models, const v1::StartExperimentRequest& base,
              const std::vector<std::string>& ids);
  // Writes the experiments' curves and gradient flow to `path` as one self-contained
  // HTML file (see report.h), through a temporary file.
  int Report(const std::vector<std::string>& ids, const std::string& path);
  // Starts the sweep; with `follow`, shows each run's epochs as they finish and, once
  // every run has, the sweep's table; otherwise prints its id.
  int StartSweep(const v1::StartSweepRequest& request, bool follow);
  int ListSweeps(int limit);
  int GetSweep(const std::string& id);
  int CancelSweep(const std::string& id);
  int DeleteSweep(const std::string& id);
  enum class ExportTable { kEpochs, kPredictions };
  // The per-epoch metrics (see MetricsCsv) or the predictions (PredictionsCsv) of an
  // experiment, or of every run of a sweep, as tidy CSV to `path` (through a temporary
  // file), or to stdout when it is empty.
  int ExportMetrics(const std::string& id, const std::string& path, ExportTable table);
  // Uploads the TorchScript file at `path` under `name`, in chunks, with its sha256.
  int UploadModel(const std::string& path, const std::string& name);
  // Sets spec.model to the TorchScript file at `path`, "uploaded:<its sha256>", uploading
  // it first (named after the file) when the server does not have it; says which on
  // stderr. An exit code: 0 when the spec may be sent.
  int UseModelFile(const std::string& path, v1::ExperimentSpec& spec);
  int ListModels();
  int GetModel(const std::string& id);
  int DeleteModel(const std::string& id);
  int Info();
  int Health();

 private:
  std::unique_ptr<grpc::ClientContext> UnaryContext() const;
  // One UploadModel call: the header, then `bytes` in chunks.
  grpc::Status Upload(const std::string& bytes, const std::string& sha256, const std::string& name,
                      v1::ModelArtifact* artifact);
  // For StartExperiment and StartSweep: --timeout, but at least two minutes.
  std::unique_ptr<grpc::ClientContext> StartContext() const;
  // The sweep with that id into *sweep, or nothing when there is none (OK either way).
  grpc::Status FindSweep(const std::string& id, std::optional<v1::Sweep>* sweep);
  // Prints what went wrong as a sentence and returns its exit code.
  int Fail(const grpc::Status& status);
  void PrintJson(const google::protobuf::Message& message);
  // Streams an experiment's metrics to the end, reconnecting from the last sequence seen.
  // `on_event` sees each event once. Returns the stream's final status.
  grpc::Status FollowMetrics(const std::string& id,
                             const std::function<void(const v1::MetricsEvent&)>& on_event);
  grpc::Status GetExperiment(const std::string& id, v1::Experiment* experiment);
  // Shows the sweep's runs' epochs as they finish, until every run has; then its table.
  int FollowSweep(const v1::Sweep& sweep);
  // Renames a fully written `partial` file to `path`; on failure says why and removes it.
  bool MoveIntoPlace(const std::string& partial, const std::string& path);
  // Everything the server keeps of an experiment's metrics events, without following.
  grpc::Status ReadMetrics(const std::string& id, std::vector<v1::MetricsEvent>* metrics);
  // Its metrics events and its gradient snapshots.
  grpc::Status ReadEvents(const std::string& id, std::vector<v1::MetricsEvent>* metrics,
                          std::vector<v1::GradientSnapshot>* gradients);

  const CliOptions options_;
  std::ostream& out_;
  std::ostream& err_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ExperimentService::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

}  // namespace gradlab

#endif  // GRADLAB_CLIENT_CLI_H_
