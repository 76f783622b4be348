#include "client/cli.h"

#include <google/protobuf/struct.pb.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/format.h"
#include "client/report.h"
#include "common/byte_size.h"
#include "common/experiment_spec.h"
#include "common/experiment_state.h"
#include "common/proto_json.h"
#include "common/request_limits.h"
#include "common/sha256.h"

namespace gradlab {
namespace {

// Each epoch's predictions (0: the untrained model's). An epoch evaluated again (after a
// restart or a requeue) is told of again: the newest is its own.
std::map<int, v1::Predictions> NewestPredictions(const std::vector<v1::MetricsEvent>& events) {
  std::map<int, v1::Predictions> by_epoch;
  for (const v1::MetricsEvent& event : events) {
    if (event.has_predictions()) by_epoch[event.predictions().epoch()] = event.predictions();
  }
  return by_epoch;
}

// Adds the token to every call's metadata, whichever command makes it.
class TokenInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit TokenInterceptor(const std::string& authorization) : authorization_(authorization) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", authorization_});
    }
    methods->Proceed();
  }

 private:
  const std::string& authorization_;
};

class TokenInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(const std::string& token) : authorization_("Bearer " + token) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new TokenInterceptor(authorization_);
  }

 private:
  const std::string authorization_;
};

std::shared_ptr<grpc::Channel> NewChannel(const CliOptions& options,
                                          std::shared_ptr<grpc::ChannelCredentials> credentials) {
  if (options.token.empty()) return grpc::CreateChannel(options.server, credentials);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<TokenInterceptorFactory>(options.token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      options.server, credentials, grpc::ChannelArguments(), std::move(interceptors));
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const CliOptions& options) {
  if (!options.tls) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = options.tls_pem.ca_certs;
  ssl.pem_private_key = options.tls_pem.private_key;
  ssl.pem_cert_chain = options.tls_pem.cert_chain;
  return grpc::SslCredentials(ssl);
}

// Clears the progress line drawn on a terminal.
constexpr char kClearLine[] = "\r\033[K";

}  // namespace

Cli::Cli(CliOptions options, std::ostream& out, std::ostream& err)
    : options_(std::move(options)),
      out_(out),
      err_(err),
      channel_(NewChannel(options_, ChannelCredentials(options_))),
      stub_(v1::ExperimentService::NewStub(channel_)),
      health_(grpc::health::v1::Health::NewStub(channel_)) {}

std::unique_ptr<grpc::ClientContext> Cli::UnaryContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
  return context;
}

std::unique_ptr<grpc::ClientContext> Cli::StartContext() const {
  // The server measures each new model's memory before it queues it, which takes
  // seconds per model on a busy machine: a sweep of many models, longer than --timeout.
  constexpr absl::Duration kLeast = absl::Minutes(2);
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + std::max(options_.timeout, kLeast)));
  return context;
}

int Cli::Fail(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      err_ << "gradlab: cannot reach gradlabd at " << options_.server << " (is it running?)";
      if (!status.error_message().empty()) err_ << ": " << status.error_message();
      err_ << "\n";
      return kExitUnreachable;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      err_ << "gradlab: " << status.error_message() << "\n";
      return kExitRefused;
    default:
      err_ << "gradlab: error " << status.error_code() << ": " << status.error_message() << "\n";
      return kExitError;
  }
}

void Cli::PrintJson(const google::protobuf::Message& message) { out_ << ToJson(message) << "\n"; }

bool Cli::MoveIntoPlace(const std::string& partial, const std::string& path) {
  if (std::rename(partial.c_str(), path.c_str()) == 0) return true;
  err_ << "gradlab: cannot rename " << partial << " to " << path << ": " << std::strerror(errno)
       << "\n";
  std::remove(partial.c_str());
  return false;
}

grpc::Status Cli::GetExperiment(const std::string& id, v1::Experiment* experiment) {
  v1::GetExperimentRequest request;
  request.set_id(id);
  return stub_->GetExperiment(UnaryContext().get(), request, experiment);
}

int Cli::Submit(const v1::StartExperimentRequest& request, bool follow) {
  v1::Experiment experiment;
  grpc::Status status = stub_->StartExperiment(StartContext().get(), request, &experiment);
  if (!status.ok()) return Fail(status);
  if (options_.json) {
    PrintJson(experiment);
  } else if (follow) {
    out_ << "submitted " << experiment.id() << " (" << experiment.spec().model() << " on "
         << experiment.spec().dataset() << ", estimated peak memory "
         << FormatBytes(experiment.estimated_peak_bytes()) << ")\n";
  } else {
    // stdout is the id alone, for scripts; the estimate goes to stderr.
    out_ << experiment.id() << "\n";
    err_ << "estimated peak memory " << FormatBytes(experiment.estimated_peak_bytes()) << "\n";
  }
  out_.flush();
  return follow ? Watch(experiment.id()) : kExitOk;
}

int Cli::List(v1::ExperimentState state, int limit) {
  std::vector<v1::Experiment> experiments;
  v1::ListExperimentsRequest request;
  request.set_state(state);
  do {
    request.set_page_size(std::min(limit - static_cast<int>(experiments.size()), kMaxPageSize));
    v1::ListExperimentsResponse response;
    grpc::Status status = stub_->ListExperiments(UnaryContext().get(), request, &response);
    if (!status.ok()) return Fail(status);
    experiments.insert(experiments.end(), response.experiments().begin(),
                       response.experiments().end());
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty() && static_cast<int>(experiments.size()) < limit);
  if (options_.json) {
    for (const v1::Experiment& e : experiments) PrintJson(e);
  } else {
    out_ << ExperimentTable(experiments);
  }
  return kExitOk;
}

int Cli::Get(const std::string& id) {
  v1::Experiment experiment;
  grpc::Status status = GetExperiment(id, &experiment);
  if (!status.ok()) return Fail(status);
  if (options_.json) {
    PrintJson(experiment);
  } else {
    out_ << ExperimentDetails(experiment);
  }
  return kExitOk;
}

int Cli::Cancel(const std::string& id) {
  v1::CancelExperimentRequest request;
  request.set_id(id);
  v1::Experiment experiment;
  // A running experiment answers once it has stopped, within one batch.
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout + absl::Seconds(60)));
  grpc::Status status = stub_->CancelExperiment(context.get(), request, &experiment);
  if (!status.ok()) return Fail(status);
  if (options_.json) {
    PrintJson(experiment);
  } else {
    out_ << experiment.id() << " " << v1::ExperimentState_Name(experiment.state()) << "\n";
  }
  return kExitOk;
}

grpc::Status Cli::FollowMetrics(const std::string& id,
                                const std::function<void(const v1::MetricsEvent&)>& on_event) {
  int64_t next_sequence = 0;
  absl::Time last_contact = absl::Now();
  absl::Duration backoff = absl::Milliseconds(250);
  while (true) {
    grpc::ClientContext context;
    v1::StreamMetricsRequest request;
    request.set_id(id);
    request.set_from_sequence(next_sequence);
    auto reader = stub_->StreamMetrics(&context, request);
    v1::MetricsEvent event;
    while (reader->Read(&event)) {
      next_sequence = event.sequence() + 1;
      last_contact = absl::Now();
      backoff = absl::Milliseconds(250);
      on_event(event);
    }
    grpc::Status status = reader->Finish();
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE ||
        absl::Now() - last_contact > options_.reconnect_timeout) {
      return status;
    }
    // The connection dropped or the server restarts: resume where we were.
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
}

int Cli::Delete(const std::string& id) {
  v1::DeleteExperimentRequest request;
  request.set_id(id);
  v1::DeleteExperimentResponse response;
  grpc::Status status = stub_->DeleteExperiment(UnaryContext().get(), request, &response);
  if (!status.ok()) return Fail(status);
  if (!options_.json) out_ << "deleted " << id << "\n";
  return kExitOk;
}

int Cli::Export(const std::string& id, v1::ExportModelRequest::Which which,
                v1::ExportModelRequest::Format format, const std::string& path) {
  v1::ExportModelRequest request;
  request.set_id(id);
  request.set_which(which);
  request.set_format(format);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout + absl::Seconds(60)));
  std::unique_ptr<grpc::ClientReader<v1::ModelChunk>> reader =
      stub_->ExportModel(&context, request);
  const std::string partial = path + ".partial";
  std::ofstream file(partial, std::ios::binary | std::ios::trunc);
  if (!file) {
    context.TryCancel();
    reader->Finish().IgnoreError();
    err_ << "gradlab: cannot write " << partial << ": " << std::strerror(errno) << "\n";
    return kExitError;
  }
  v1::ModelChunk chunk;
  int epoch = 0;
  int64_t total = 0, written = 0;
  while (reader->Read(&chunk)) {
    if (written == 0 && chunk.total_bytes() > 0) {
      epoch = chunk.epoch();
      total = chunk.total_bytes();
    }
    file.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    written += static_cast<int64_t>(chunk.data().size());
  }
  grpc::Status status = reader->Finish();
  file.close();
  if (!status.ok() || !file || written != total) {
    std::remove(partial.c_str());
    if (!status.ok()) return Fail(status);
    err_ << "gradlab: could not write " << path << " completely (" << written << " of " << total
         << " bytes)\n";
    return kExitError;
  }
  if (!MoveIntoPlace(partial, path)) return kExitError;
  if (options_.json) {
    google::protobuf::Struct result;
    auto& fields = *result.mutable_fields();
    fields["id"].set_string_value(id);
    fields["epoch"].set_number_value(epoch);
    fields["bytes"].set_number_value(static_cast<double>(written));
    fields["file"].set_string_value(path);
    PrintJson(result);
  } else {
    out_ << "wrote " << path << ": the model of epoch " << epoch << " of " << id << " ("
         << (which == v1::ExportModelRequest::LAST ? "last" : "best") << "), " << written
         << " bytes; load it with torch.load\n";
  }
  return kExitOk;
}

int Cli::Watch(const std::string& id) {
  v1::Experiment experiment;
  grpc::Status status = GetExperiment(id, &experiment);
  if (!status.ok()) return Fail(status);
  const int batch_size = experiment.spec().batch_size();
  bool progress_drawn = false;
  status = FollowMetrics(id, [&](const v1::MetricsEvent& event) {
    if (options_.json) {
      PrintJson(event);
      out_.flush();
      return;
    }
    if (event.has_batch_progress()) {
      if (options_.interactive) {
        out_ << kClearLine << ProgressLine(event.batch_progress(), batch_size) << std::flush;
        progress_drawn = true;
      }
      return;
    }
    if (progress_drawn) {
      out_ << kClearLine;
      progress_drawn = false;
    }
    if (event.has_epoch_metrics()) {
      out_ << EpochLine(event.epoch_metrics()) << std::endl;
    } else if (options_.interactive && !IsFinished(event.state_change().state())) {
      out_ << v1::ExperimentState_Name(event.state_change().state()) << ": "
           << event.state_change().reason() << std::endl;
    }
  });
  if (progress_drawn) out_ << kClearLine;
  if (!status.ok()) return Fail(status);
  status = GetExperiment(id, &experiment);
  if (!status.ok()) return Fail(status);
  // With --json the stream's own terminal StateChange event has said how it ended.
  if (!options_.json) out_ << FinalStateLine(experiment) << "\n";
  return experiment.state() == v1::SUCCEEDED ? kExitOk : kExitRunNotSucceeded;
}

int Cli::Grads(const std::string& id, std::optional<int64_t> step, const std::string& layers,
               bool follow) {
  auto print = [&](const v1::GradientSnapshot& snapshot) {
    if (options_.json) {
      PrintJson(snapshot);
    } else {
      out_ << GradientTable(snapshot) << "\n";
    }
    out_.flush();
  };
  auto open = [&](grpc::ClientContext& context, int64_t from_step, bool follow_stream) {
    v1::StreamGradientsRequest request;
    request.set_id(id);
    request.set_from_step(from_step);
    request.set_layers(layers);
    request.set_follow(follow_stream);
    return stub_->StreamGradients(&context, request);
  };

  int64_t next_step = 0;
  v1::GradientSnapshot snapshot;
  if (step.has_value()) {
    // The first snapshot at or after the step, waiting for it if the run has not got there.
    grpc::ClientContext context;
    auto reader = open(context, *step, /*follow_stream=*/true);
    const bool found = reader->Read(&snapshot);
    context.TryCancel();
    grpc::Status status = reader->Finish();
    if (!found) {
      if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) return Fail(status);
      err_ << "gradlab: experiment " << id << " has no gradient snapshot at or after step " << *step
           << "\n";
      return kExitRefused;
    }
    print(snapshot);
    next_step = snapshot.step() + 1;
  } else {
    // The latest snapshot so far.
    grpc::ClientContext context;
    auto reader = open(context, 0, /*follow_stream=*/false);
    bool found = false;
    v1::GradientSnapshot latest;
    while (reader->Read(&latest)) {
      snapshot = latest;
      found = true;
    }
    grpc::Status status = reader->Finish();
    if (!status.ok()) return Fail(status);
    if (found) {
      print(snapshot);
      next_step = snapshot.step() + 1;
    } else if (!follow) {
      err_ << "gradlab: experiment " << id << " has no gradient snapshot yet\n";
      return kExitRefused;
    }
  }
  if (!follow) return kExitOk;
  grpc::ClientContext context;
  auto reader = open(context, next_step, /*follow_stream=*/true);
  while (reader->Read(&snapshot)) print(snapshot);
  grpc::Status status = reader->Finish();
  return status.ok() ? kExitOk : Fail(status);
}

int Cli::Preds(const std::string& id, std::optional<int> epoch) {
  std::vector<v1::MetricsEvent> events;
  if (grpc::Status status = ReadMetrics(id, &events); !status.ok()) return Fail(status);
  std::map<int, v1::Predictions> by_epoch = NewestPredictions(events);
  auto found = epoch.has_value() ? by_epoch.find(*epoch)
                                 : (by_epoch.empty() ? by_epoch.end() : std::prev(by_epoch.end()));
  if (found == by_epoch.end()) {
    err_ << "gradlab: experiment " << id << " has no predictions"
         << (epoch.has_value() ? absl::StrCat(" for epoch ", *epoch) : std::string(" yet"));
    if (!by_epoch.empty()) {
      err_ << "; it has epochs " << by_epoch.begin()->first << " to " << by_epoch.rbegin()->first;
    } else {
      err_ << " (epoch 0 comes before the first step unless spec.evaluate_at_init is false)";
    }
    err_ << "\n";
    return kExitRefused;
  }
  if (options_.json) {
    PrintJson(found->second);
  } else {
    out_ << PredictionsTable(found->second);
  }
  return kExitOk;
}

int Cli::Compare(const std::vector<std::string>& models, const v1::StartExperimentRequest& base,
                 const std::vector<std::string>& ids) {
  std::vector<std::string> experiment_ids = ids;
  if (experiment_ids.empty()) {
    for (const std::string& model : models) {
      v1::StartExperimentRequest request = base;
      request.mutable_spec()->set_model(model);
      if (request.spec().name().empty()) request.mutable_spec()->set_name("compare " + model);
      if (!base.request_id().empty()) request.set_request_id(base.request_id() + "-" + model);
      v1::Experiment experiment;
      grpc::Status status = stub_->StartExperiment(StartContext().get(), request, &experiment);
      if (!status.ok()) return Fail(status);
      experiment_ids.push_back(experiment.id());
      if (!options_.json) out_ << "submitted " << model << " as " << experiment.id() << "\n";
    }
    out_.flush();
  }

  // Live progress from the server's change feed until every experiment has finished.
  std::map<std::string, v1::Experiment> latest;
  std::set<std::string> wanted(experiment_ids.begin(), experiment_ids.end());
  std::map<std::string, int> epochs_shown;
  {
    grpc::ClientContext context;
    auto watch = stub_->WatchExperiments(&context, {});
    v1::Experiment update;
    size_t finished = 0;
    while (finished < wanted.size() && watch->Read(&update)) {
      if (wanted.count(update.id()) == 0) continue;
      latest[update.id()] = update;
      if (!options_.json && update.last_metrics().epoch() > epochs_shown[update.id()]) {
        epochs_shown[update.id()] = update.last_metrics().epoch();
        out_ << absl::StrFormat("%-10s %s", update.spec().model(), EpochLine(update.last_metrics()))
             << std::endl;
      }
      finished = std::count_if(latest.begin(), latest.end(),
                               [](const auto& item) { return IsFinished(item.second.state()); });
    }
    context.TryCancel();
    grpc::Status status = watch->Finish();
    if (finished < wanted.size()) return Fail(status);
  }

  std::vector<ComparisonRow> rows;
  bool all_succeeded = true;
  for (const std::string& id : experiment_ids) {
    ComparisonRow row;
    row.experiment = latest[id];
    all_succeeded = all_succeeded && row.experiment.state() == v1::SUCCEEDED;
    int epochs = 0;
    grpc::Status status = FollowMetrics(id, [&](const v1::MetricsEvent& event) {
      if (!event.has_epoch_metrics()) return;
      const v1::EpochMetrics& m = event.epoch_metrics();
      row.final_train_loss = m.train_loss();
      row.final_test_accuracy = m.test_accuracy();
      row.seconds += m.epoch_seconds();
      row.images_per_second += m.images_per_second();
      ++epochs;
    });
    if (!status.ok()) return Fail(status);
    if (epochs > 0) row.images_per_second /= epochs;
    grpc::ClientContext context;
    v1::StreamGradientsRequest request;
    request.set_id(id);
    request.set_follow(false);
    auto reader = stub_->StreamGradients(&context, request);
    v1::GradientSnapshot first;
    if (reader->Read(&first) && first.step() == 1) {
      row.first_to_last_grad_ratio = FirstToLastGradRatio(first);
    }
    context.TryCancel();
    reader->Finish();
    rows.push_back(std::move(row));
  }
  if (options_.json) {
    for (const ComparisonRow& row : rows) PrintJson(row.experiment);
  } else {
    out_ << "\n" << ComparisonTable(rows);
  }
  return all_succeeded ? kExitOk : kExitRunNotSucceeded;
}

grpc::Status Cli::ReadMetrics(const std::string& id, std::vector<v1::MetricsEvent>* metrics) {
  v1::StreamMetricsRequest request;
  request.set_id(id);
  request.set_follow(false);
  grpc::ClientContext context;
  auto reader = stub_->StreamMetrics(&context, request);
  for (v1::MetricsEvent event; reader->Read(&event);) metrics->push_back(std::move(event));
  return reader->Finish();
}

grpc::Status Cli::ReadEvents(const std::string& id, std::vector<v1::MetricsEvent>* metrics,
                             std::vector<v1::GradientSnapshot>* gradients) {
  if (grpc::Status status = ReadMetrics(id, metrics); !status.ok()) return status;
  v1::StreamGradientsRequest request;
  request.set_id(id);
  request.set_follow(false);
  grpc::ClientContext context;
  auto reader = stub_->StreamGradients(&context, request);
  for (v1::GradientSnapshot snapshot; reader->Read(&snapshot);) gradients->push_back(snapshot);
  return reader->Finish();
}

int Cli::Report(const std::vector<std::string>& ids, const std::string& path) {
  std::vector<v1::Sweep> sweeps;
  std::vector<ReportExperiment> experiments;
  for (const std::string& id : ids) {
    std::optional<v1::Sweep> sweep;
    if (grpc::Status status = FindSweep(id, &sweep); !status.ok()) return Fail(status);
    if (sweep.has_value()) {
      sweeps.push_back(*std::move(sweep));
      continue;
    }
    ReportExperiment entry;
    if (grpc::Status status = GetExperiment(id, &entry.experiment); !status.ok()) {
      return Fail(status);
    }
    if (grpc::Status status = ReadEvents(id, &entry.metrics, &entry.gradients); !status.ok()) {
      return Fail(status);
    }
    experiments.push_back(std::move(entry));
  }
  const std::string html = RenderReport(sweeps, experiments, options_.server, absl::Now());
  const std::string partial = path + ".partial";
  {
    std::ofstream file(partial, std::ios::binary | std::ios::trunc);
    file.write(html.data(), static_cast<std::streamsize>(html.size()));
    file.close();
    if (!file) {
      err_ << "gradlab: cannot write " << partial << ": " << std::strerror(errno) << "\n";
      std::remove(partial.c_str());
      return kExitError;
    }
  }
  if (!MoveIntoPlace(partial, path)) return kExitError;
  size_t snapshots = 0;
  for (const ReportExperiment& entry : experiments) snapshots += entry.gradients.size();
  if (options_.json) {
    google::protobuf::Struct result;
    auto& fields = *result.mutable_fields();
    fields["file"].set_string_value(path);
    fields["bytes"].set_number_value(static_cast<double>(html.size()));
    fields["sweeps"].set_number_value(static_cast<double>(sweeps.size()));
    fields["experiments"].set_number_value(static_cast<double>(experiments.size()));
    fields["snapshots"].set_number_value(static_cast<double>(snapshots));
    PrintJson(result);
  } else {
    out_ << "wrote " << path << ": ";
    if (!sweeps.empty()) out_ << sweeps.size() << (sweeps.size() == 1 ? " sweep, " : " sweeps, ");
    out_ << experiments.size() << (experiments.size() == 1 ? " experiment, " : " experiments, ")
         << snapshots << " gradient snapshots, " << html.size() << " bytes; open it in a browser\n";
  }
  return kExitOk;
}

int Cli::StartSweep(const v1::StartSweepRequest& request, bool follow) {
  v1::Sweep sweep;
  grpc::Status status = stub_->StartSweep(StartContext().get(), request, &sweep);
  if (!status.ok()) return Fail(status);
  if (!follow) {
    if (options_.json) {
      PrintJson(sweep);
    } else {
      out_ << sweep.id() << "\n";
      err_ << sweep.cells_size() << " cells x " << sweep.seeds_size()
           << " seeds: " << sweep.runs_total() << " runs queued\n";
    }
    return kExitOk;
  }
  if (!options_.json) {
    out_ << "sweep " << sweep.id() << ": " << sweep.cells_size() << " cells x "
         << sweep.seeds_size() << " seeds, " << sweep.runs_total() << " runs queued" << std::endl;
  }
  return FollowSweep(sweep);
}

int Cli::FollowSweep(const v1::Sweep& sweep) {
  // Which cell and seed each run is.
  std::map<std::string, std::string> run_names;
  for (const v1::SweepCell& cell : sweep.cells()) {
    for (int s = 0; s < cell.experiment_ids_size() && s < sweep.seeds_size(); ++s) {
      run_names[cell.experiment_ids(s)] =
          absl::StrCat(cell.description(), ", seed ", sweep.seeds(s));
    }
  }
  std::map<std::string, int> epochs_shown;
  std::set<std::string> finished;
  {
    grpc::ClientContext context;
    auto watch = stub_->WatchExperiments(&context, {});
    v1::Experiment update;
    while (finished.size() < run_names.size() && watch->Read(&update)) {
      auto run = run_names.find(update.id());
      if (run == run_names.end()) continue;
      if (IsFinished(update.state()) || update.deleted()) finished.insert(update.id());
      if (options_.json) continue;
      if (update.last_metrics().epoch() > epochs_shown[update.id()]) {
        epochs_shown[update.id()] = update.last_metrics().epoch();
        out_ << absl::StrFormat("[%d/%d done] %s: %s", finished.size(), run_names.size(),
                                run->second, EpochLine(update.last_metrics()))
             << std::endl;
      } else if (IsFinished(update.state())) {
        out_ << absl::StrFormat("[%d/%d done] %s: %s", finished.size(), run_names.size(),
                                run->second, v1::ExperimentState_Name(update.state()))
             << std::endl;
      }
    }
    context.TryCancel();
    grpc::Status status = watch->Finish();
    if (finished.size() < run_names.size()) return Fail(status);
  }
  // The aggregate as the server has it once the sweep has finished: the stream of its
  // changes ends after that.
  v1::Sweep done;
  {
    grpc::ClientContext context;
    v1::StreamSweepRequest request;
    request.set_id(sweep.id());
    auto stream = stub_->StreamSweep(&context, request);
    for (v1::Sweep update; stream->Read(&update);) done = std::move(update);
    if (grpc::Status status = stream->Finish(); !status.ok()) return Fail(status);
  }
  if (options_.json) {
    PrintJson(done);
  } else {
    out_ << "\n" << SweepTable(done);
  }
  return done.state() == v1::SUCCEEDED ? kExitOk : kExitRunNotSucceeded;
}

int Cli::ListSweeps(int limit) {
  std::vector<v1::Sweep> sweeps;
  v1::ListSweepsRequest request;
  do {
    request.set_page_size(std::min(limit - static_cast<int>(sweeps.size()), kMaxPageSize));
    v1::ListSweepsResponse response;
    grpc::Status status = stub_->ListSweeps(UnaryContext().get(), request, &response);
    if (!status.ok()) return Fail(status);
    sweeps.insert(sweeps.end(), response.sweeps().begin(), response.sweeps().end());
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty() && static_cast<int>(sweeps.size()) < limit);
  if (options_.json) {
    for (const v1::Sweep& sweep : sweeps) PrintJson(sweep);
  } else {
    out_ << SweepListTable(sweeps);
  }
  return kExitOk;
}

int Cli::GetSweep(const std::string& id) {
  v1::GetSweepRequest request;
  request.set_id(id);
  v1::Sweep sweep;
  grpc::Status status = stub_->GetSweep(UnaryContext().get(), request, &sweep);
  if (!status.ok()) return Fail(status);
  if (options_.json) {
    PrintJson(sweep);
  } else {
    out_ << SweepTable(sweep);
  }
  return kExitOk;
}

int Cli::CancelSweep(const std::string& id) {
  v1::CancelSweepRequest request;
  request.set_id(id);
  v1::Sweep sweep;
  // The answer comes once every running run has stopped, within one batch each.
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout + absl::Seconds(60)));
  grpc::Status status = stub_->CancelSweep(context.get(), request, &sweep);
  if (!status.ok()) return Fail(status);
  if (options_.json) {
    PrintJson(sweep);
  } else {
    out_ << sweep.id() << " " << v1::ExperimentState_Name(sweep.state()) << "\n";
  }
  return kExitOk;
}

int Cli::DeleteSweep(const std::string& id) {
  v1::DeleteSweepRequest request;
  request.set_id(id);
  v1::DeleteSweepResponse response;
  grpc::Status status = stub_->DeleteSweep(UnaryContext().get(), request, &response);
  if (!status.ok()) return Fail(status);
  if (!options_.json) out_ << "deleted sweep " << id << " and its runs\n";
  return kExitOk;
}

grpc::Status Cli::FindSweep(const std::string& id, std::optional<v1::Sweep>* sweep) {
  v1::GetSweepRequest request;
  request.set_id(id);
  v1::Sweep found;
  grpc::Status status = stub_->GetSweep(UnaryContext().get(), request, &found);
  if (status.ok()) *sweep = std::move(found);
  return status.error_code() == grpc::StatusCode::NOT_FOUND ? grpc::Status::OK : status;
}

int Cli::ExportMetrics(const std::string& id, const std::string& path, ExportTable table) {
  std::optional<v1::Sweep> sweep;
  if (grpc::Status status = FindSweep(id, &sweep); !status.ok()) return Fail(status);
  std::vector<std::string> ids;
  if (sweep.has_value()) {
    for (const v1::SweepCell& cell : sweep->cells()) {
      ids.insert(ids.end(), cell.experiment_ids().begin(), cell.experiment_ids().end());
    }
  } else {
    ids.push_back(id);
  }
  std::vector<RunEpochs> runs;
  for (const std::string& run_id : ids) {
    RunEpochs& run = runs.emplace_back();
    grpc::Status status = GetExperiment(run_id, &run.experiment);
    // A sweep's run deleted since has no rows.
    if (sweep.has_value() && status.error_code() == grpc::StatusCode::NOT_FOUND) {
      runs.pop_back();
      continue;
    }
    if (!status.ok()) return Fail(status);
    std::vector<v1::MetricsEvent> events;
    if (grpc::Status read = ReadMetrics(run_id, &events); !read.ok()) return Fail(read);
    for (const v1::MetricsEvent& event : events) {
      if (event.has_epoch_metrics()) run.epochs.push_back(event.epoch_metrics());
    }
    for (auto& [epoch, predictions] : NewestPredictions(events)) {
      run.predictions.push_back(std::move(predictions));
    }
  }
  const v1::Sweep* of_sweep = sweep.has_value() ? &*sweep : nullptr;
  const std::string csv =
      table == ExportTable::kEpochs ? MetricsCsv(of_sweep, runs) : PredictionsCsv(of_sweep, runs);
  if (path.empty()) {
    out_ << csv;
    return kExitOk;
  }
  const std::string partial = path + ".partial";
  {
    std::ofstream file(partial, std::ios::binary | std::ios::trunc);
    file << csv;
    file.close();
    if (!file) {
      std::remove(partial.c_str());
      err_ << "gradlab: cannot write " << partial << ": " << std::strerror(errno) << "\n";
      return kExitError;
    }
  }
  return MoveIntoPlace(partial, path) ? kExitOk : kExitError;
}

namespace {

// The file's bytes and their sha256 in hex.
absl::StatusOr<std::pair<std::string, std::string>> ReadAndHash(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file)
    return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  std::string bytes((std::istreambuf_iterator<char>(file)), {});
  if (file.bad()) return absl::InternalError(absl::StrCat("cannot read ", path));
  std::string hex = Sha256Hex(bytes);
  return std::make_pair(std::move(bytes), std::move(hex));
}

// Below the server's default --max_request_bytes (256 KiB) with room for the framing.
constexpr size_t kUploadChunkBytes = 128 << 10;

}  // namespace

grpc::Status Cli::Upload(const std::string& bytes, const std::string& sha256,
                         const std::string& name, v1::ModelArtifact* artifact) {
  // The server checks the model in a helper process before it answers: up to two minutes.
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout + absl::Minutes(3)));
  std::unique_ptr<grpc::ClientWriter<v1::UploadModelRequest>> writer =
      stub_->UploadModel(context.get(), artifact);
  v1::UploadModelRequest header;
  header.mutable_header()->set_name(name);
  header.mutable_header()->set_sha256(sha256);
  bool open = writer->Write(header);
  for (size_t at = 0; open && at < bytes.size(); at += kUploadChunkBytes) {
    v1::UploadModelRequest chunk;
    chunk.set_chunk(bytes.substr(at, kUploadChunkBytes));
    open = writer->Write(chunk);  // false: the server has answered already
  }
  writer->WritesDone();
  return writer->Finish();
}

int Cli::UploadModel(const std::string& path, const std::string& name) {
  absl::StatusOr<std::pair<std::string, std::string>> file = ReadAndHash(path);
  if (!file.ok()) {
    err_ << "gradlab: " << file.status().message() << "\n";
    return kExitError;
  }
  const auto& [bytes, sha256] = *file;
  v1::ModelArtifact artifact;
  grpc::Status status = Upload(bytes, sha256, name, &artifact);
  if (!status.ok()) return Fail(status);
  if (options_.json) {
    PrintJson(artifact);
  } else {
    out_ << ModelText(artifact);
  }
  return kExitOk;
}

int Cli::UseModelFile(const std::string& path, v1::ExperimentSpec& spec) {
  absl::StatusOr<std::pair<std::string, std::string>> file = ReadAndHash(path);
  if (!file.ok()) {
    err_ << "gradlab: " << file.status().message() << "\n";
    return kExitError;
  }
  const auto& [bytes, sha256] = *file;
  v1::GetModelRequest request;
  request.set_id(sha256);
  v1::ModelArtifact artifact;
  grpc::Status status = stub_->GetModel(UnaryContext().get(), request, &artifact);
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    status = Upload(bytes, sha256, std::filesystem::path(path).stem().string(), &artifact);
    if (status.ok()) err_ << "uploaded " << path << " as model " << artifact.name() << "\n";
  } else if (status.ok()) {
    err_ << path << " is model " << artifact.name() << " on the server already\n";
  }
  if (!status.ok()) return Fail(status);
  spec.set_model(absl::StrCat(kUploadedModelPrefix, sha256));
  return kExitOk;
}

int Cli::ListModels() {
  v1::ListModelsResponse response;
  grpc::Status status = stub_->ListModels(UnaryContext().get(), {}, &response);
  if (!status.ok()) return Fail(status);
  if (options_.json) {
    for (const v1::ModelArtifact& model : response.models()) PrintJson(model);
  } else {
    out_ << ModelListTable({response.models().begin(), response.models().end()});
  }
  return kExitOk;
}

int Cli::GetModel(const std::string& id) {
  v1::GetModelRequest request;
  request.set_id(id);
  v1::ModelArtifact model;
  grpc::Status status = stub_->GetModel(UnaryContext().get(), request, &model);
  if (!status.ok()) return Fail(status);
  if (options_.json) {
    PrintJson(model);
  } else {
    out_ << ModelText(model);
  }
  return kExitOk;
}

int Cli::DeleteModel(const std::string& id) {
  v1::DeleteModelRequest request;
  request.set_id(id);
  v1::DeleteModelResponse response;
  grpc::Status status = stub_->DeleteModel(UnaryContext().get(), request, &response);
  if (!status.ok()) return Fail(status);
  if (!options_.json) out_ << "deleted model " << id << "\n";
  return kExitOk;
}

int Cli::Info() {
  v1::ServerInfo info;
  grpc::Status status = stub_->GetServerInfo(UnaryContext().get(), {}, &info);
  if (!status.ok()) return Fail(status);
  if (options_.json) {
    PrintJson(info);
  } else {
    out_ << ServerInfoText(info);
  }
  return kExitOk;
}

int Cli::Health() {
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = health_->Check(UnaryContext().get(), request, &response);
  if (!status.ok()) return Fail(status);
  if (options_.json) {
    PrintJson(response);
  } else {
    out_ << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()) << "\n";
  }
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? kExitOk
                                                                             : kExitRunNotSucceeded;
}

}  // namespace gradlab
