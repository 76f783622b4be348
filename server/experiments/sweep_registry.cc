#include "server/experiments/sweep_registry.h"

#include <glog/logging.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/client_text.h"
#include "common/experiment_state.h"
#include "common/request_limits.h"
#include "common/sweep_grid.h"
#include "server/experiments/event_protos.h"
#include "server/experiments/random_id.h"

namespace gradlab {
namespace {

constexpr size_t kMaxRequestIdLength = 200;
constexpr size_t kMaxRunNameCharacters = 200;
// The labels every run of a sweep carries.
constexpr char kSweepLabel[] = "sweep";
constexpr char kCellLabel[] = "sweep_cell";

absl::Status NoSuchSweep(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("no sweep with id ", QuoteClientText(id)));
}

// The latest finished_time of the runs, for a finished sweep.
google::protobuf::Timestamp Later(const google::protobuf::Timestamp& a,
                                  const google::protobuf::Timestamp& b) {
  return std::make_pair(a.seconds(), a.nanos()) < std::make_pair(b.seconds(), b.nanos()) ? b : a;
}

}  // namespace

SweepRegistry::SweepRegistry(ExperimentRegistry& experiments, SweepOptions options)
    : experiments_(experiments), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<SweepRegistry>> SweepRegistry::Open(ExperimentRegistry& experiments,
                                                                   SweepOptions options) {
  auto registry = absl::WrapUnique(new SweepRegistry(experiments, std::move(options)));
  if (registry->options_.store != nullptr) {
    absl::StatusOr<std::vector<StoredSweep>> stored = registry->options_.store->LoadSweeps();
    if (!stored.ok()) return stored.status();
    absl::MutexLock lock(&registry->mu_);
    for (StoredSweep& sweep : *stored) {
      auto entry = std::make_shared<Entry>();
      entry->ordinal = sweep.ordinal;
      entry->request_id = sweep.request_id;
      entry->record = std::move(sweep.record);
      if (!entry->request_id.empty()) {
        registry->request_ids_[entry->request_id] = entry->record.id();
      }
      registry->sweeps_.emplace(entry->record.id(), entry);
      registry->by_age_.push_back(std::move(entry));
    }
  }
  // The cursor first reads every experiment there is: each sweep is refreshed once.
  SweepRegistry& self = *registry;
  self.cursor_ = experiments.changes().NewCursor([&self] {
    absl::MutexLock lock(&self.follow_mu_);
    self.changed_ = true;
  });
  {
    absl::MutexLock lock(&self.follow_mu_);
    self.changed_ = true;
  }
  self.follower_ = std::thread([&self] { self.Follow(); });
  return registry;
}

SweepRegistry::~SweepRegistry() { Shutdown(); }

void SweepRegistry::Shutdown() {
  {
    absl::MutexLock lock(&follow_mu_);
    stopping_ = true;
  }
  if (follower_.joinable()) follower_.join();
  cursor_.reset();
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  WakeReaders("");
}

absl::StatusOr<std::unique_ptr<SweepReader>> SweepRegistry::WatchSweep(
    absl::string_view id, int64_t from_sequence, bool follow, std::function<void()> wake) const {
  if (absl::StatusOr<std::shared_ptr<Entry>> entry = Find(id); !entry.ok()) {
    return entry.status();
  }
  absl::MutexLock lock(&watch_mu_);
  const int64_t handle = next_handle_++;
  watchers_[handle] = Watcher{std::string(id), std::move(wake)};
  return absl::WrapUnique(new SweepReader(*this, handle, std::string(id), from_sequence, follow));
}

void SweepRegistry::WakeReaders(absl::string_view id) {
  absl::MutexLock lock(&watch_mu_);
  for (const auto& [handle, watcher] : watchers_) {
    if (id.empty() || watcher.sweep_id == id) watcher.wake();
  }
}

void SweepRegistry::RemoveReader(int64_t handle) const {
  absl::MutexLock lock(&watch_mu_);
  watchers_.erase(handle);
}

SweepReader::~SweepReader() { registry_.RemoveReader(handle_); }

SweepReader::Next SweepReader::Read() {
  Next next;
  absl::ReaderMutexLock lock(&registry_.mu_);
  if (registry_.closed_) {
    next.end = absl::UnavailableError("server shutting down");
    return next;
  }
  auto it = registry_.sweeps_.find(id_);
  if (it == registry_.sweeps_.end()) {
    next.end = absl::NotFoundError(absl::StrCat("sweep ", id_, " was deleted"));
    return next;
  }
  const v1::Sweep& sweep = it->second->record;
  if (sweep.sequence() >= next_sequence_) {
    next_sequence_ = sweep.sequence() + 1;
    next.sweep = sweep;
  } else if (!follow_ || IsFinished(sweep.state())) {
    next.end = absl::OkStatus();
  }
  return next;
}

void SweepRegistry::Follow() {
  while (true) {
    {
      absl::MutexLock lock(&follow_mu_);
      follow_mu_.Await(absl::Condition(
          +[](SweepRegistry* self) {
            self->follow_mu_.AssertHeld();
            return self->changed_ || self->stopping_;
          },
          this));
      if (stopping_) return;
      changed_ = false;
    }
    std::set<std::string> sweeps;
    bool ended = false;
    while (true) {
      ChangeCursor::Next next = cursor_->Read();
      if (next.end.has_value()) ended = true;
      if (next.experiment == nullptr) break;
      const auto& labels = next.experiment->spec().labels();
      if (auto it = labels.find(kSweepLabel); it != labels.end()) sweeps.insert(it->second);
    }
    for (const std::string& id : sweeps) {
      absl::StatusOr<std::shared_ptr<Entry>> entry = Find(id);
      if (!entry.ok()) continue;  // being started (it refreshes itself), or deleted
      absl::MutexLock refresh(&refresh_mu_);
      Refresh(**entry);
    }
    if (ended) return;  // the registry shuts down
  }
}

absl::StatusOr<std::shared_ptr<SweepRegistry::Entry>> SweepRegistry::Find(
    absl::string_view id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = sweeps_.find(id);
  if (it == sweeps_.end()) return NoSuchSweep(id);
  return it->second;
}

std::optional<SweepRunResults> SweepRegistry::ReadRun(const std::string& id, Entry& entry) const {
  if (auto it = entry.finished.find(id); it != entry.finished.end()) return it->second;
  absl::StatusOr<v1::Experiment> experiment = experiments_.GetExperiment(id);
  absl::StatusOr<std::shared_ptr<ExperimentLog>> log = experiments_.EventLog(id);
  if (!experiment.ok() || !log.ok()) return std::nullopt;
  SweepRunResults results;
  results.state = experiment->state();
  results.finished_time = experiment->finished_time();
  // The epochs' metrics in epoch order; a resumed run logs an interrupted epoch once.
  int64_t from = 0;
  while (true) {
    ExperimentLog::Next<v1::MetricsEvent> next = (*log)->NextMetrics(from);
    if (next.event == nullptr) break;
    from = next.event->sequence() + 1;
    if (next.event->has_predictions()) {
      // An epoch evaluated again after a restart: the newest event is its own.
      const v1::Predictions& predictions = next.event->predictions();
      if (predictions.epoch() == 0) {
        results.initial_predictions = predictions;
      } else if (!results.latest_predictions.has_value() ||
                 predictions.epoch() >= results.latest_predictions->epoch()) {
        results.latest_predictions = predictions;
      }
    }
    if (!next.event->has_epoch_metrics()) continue;
    const v1::EpochMetrics& epoch = next.event->epoch_metrics();
    if (epoch.epoch() < 1) continue;
    if (results.epochs.size() < static_cast<size_t>(epoch.epoch())) {
      results.epochs.resize(epoch.epoch());
    }
    results.epochs[epoch.epoch() - 1] = epoch;
  }
  if (ExperimentLog::Next<v1::GradientSnapshot> first = (*log)->NextGradients(1);
      first.event != nullptr && first.event->step() == 1) {
    results.step1 = first.event;
  }
  if (IsFinished(results.state)) entry.finished[id] = results;
  return results;
}

v1::Sweep SweepRegistry::Compute(Entry& entry) const {
  v1::Sweep sweep;
  {
    absl::ReaderMutexLock lock(&mu_);
    sweep = entry.record;
  }
  bool any_started = false;
  google::protobuf::Timestamp finished;
  for (v1::SweepCell& cell : *sweep.mutable_cells()) {
    std::vector<SweepRunResults> runs;
    for (const std::string& id : cell.experiment_ids()) {
      std::optional<SweepRunResults> run = ReadRun(id, entry);
      if (!run.has_value()) continue;
      any_started |= run->state != v1::QUEUED;
      if (IsFinished(run->state)) finished = Later(finished, run->finished_time);
      runs.push_back(*std::move(run));
    }
    AggregateCell(runs, cell);
  }
  SummarizeSweep(any_started, sweep);
  if (IsFinished(sweep.state())) {
    *sweep.mutable_finished_time() = finished;
  } else {
    sweep.clear_finished_time();
  }
  return sweep;
}

void SweepRegistry::Refresh(Entry& entry) {
  v1::Sweep sweep = Compute(entry);
  {
    absl::ReaderMutexLock lock(&mu_);
    if (sweep.SerializeAsString() == entry.record.SerializeAsString()) return;
  }
  sweep.set_sequence(sweep.sequence() + 1);
  if (options_.store != nullptr) {
    absl::Status stored =
        options_.store->SaveSweep(StoredSweep{entry.ordinal, entry.request_id, sweep});
    // Recomputed from its runs when the server next starts.
    if (!stored.ok()) LOG(WARNING) << "sweep " << sweep.id() << ": " << stored;
  }
  const std::string id = sweep.id();
  {
    absl::MutexLock lock(&mu_);
    entry.record = std::move(sweep);
  }
  WakeReaders(id);
}

absl::StatusOr<v1::Sweep> SweepRegistry::StartSweep(const v1::StartSweepRequest& request) {
  if (request.request_id().size() > kMaxRequestIdLength) {
    return absl::InvalidArgumentError(absl::StrCat("request_id: ", request.request_id().size(),
                                                   " characters is longer than the limit of ",
                                                   kMaxRequestIdLength));
  }
  const auto earlier_request = [&]() -> std::shared_ptr<Entry> {
    absl::ReaderMutexLock lock(&mu_);
    auto it = request_ids_.find(request.request_id());
    if (request.request_id().empty() || it == request_ids_.end()) return nullptr;
    return sweeps_.find(it->second)->second;
  };
  absl::MutexLock start(&start_mu_);
  if (std::shared_ptr<Entry> earlier = earlier_request()) return GetSweep(earlier->record.id());

  std::string id;
  int64_t ordinal;
  {
    absl::ReaderMutexLock lock(&mu_);
    do {
      id = RandomId();
    } while (sweeps_.count(id) > 0);
    ordinal = by_age_.empty() ? 1 : by_age_.back()->ordinal + 1;
  }
  // The labels the server sets are counted against the spec's limit when it is checked.
  v1::SweepSpec labelled = request.sweep();
  (*labelled.mutable_labels())[kSweepLabel] = id;
  (*labelled.mutable_labels())[kCellLabel] = "0";
  absl::StatusOr<SweepGrid> grid = ExpandSweep(labelled, options_.max_runs);
  if (!grid.ok()) return grid.status();

  const std::string sweep_name =
      request.sweep().name().empty() ? absl::StrCat("sweep ", id) : request.sweep().name();
  std::vector<v1::ExperimentSpec> specs;
  for (const SweepRun& run : grid->runs) {
    v1::ExperimentSpec spec = run.spec;
    (*spec.mutable_labels())[kCellLabel] = absl::StrCat(run.cell);
    if (request.sweep().base().name().empty()) {
      spec.set_name(CutClientText(
          absl::StrCat(sweep_name, ": ", SweepCellText(request.sweep(), grid->cells[run.cell]),
                       ", seed ", grid->seeds[run.seed_index]),
          kMaxRunNameCharacters));
    }
    specs.push_back(std::move(spec));
  }

  const auto make_sweep = [&](const std::vector<std::string>& ids) {
    StoredSweep stored;
    stored.ordinal = ordinal;
    stored.request_id = request.request_id();
    v1::Sweep& sweep = stored.record;
    sweep.set_id(id);
    sweep.set_name(request.sweep().name());
    *sweep.mutable_spec() = request.sweep();
    sweep.set_state(v1::QUEUED);
    sweep.set_sequence(1);
    *sweep.mutable_created_time() = ToTimestamp(options_.clock());
    for (uint64_t seed : grid->seeds) sweep.add_seeds(seed);
    for (size_t c = 0; c < grid->cells.size(); ++c) {
      v1::SweepCell& cell = *sweep.add_cells();
      cell.set_index(static_cast<int>(c));
      for (const google::protobuf::Value& value : grid->cells[c]) *cell.add_values() = value;
      cell.set_description(SweepCellText(request.sweep(), grid->cells[c]));
      cell.mutable_experiment_ids()->Reserve(static_cast<int>(grid->seeds.size()));
      for (size_t s = 0; s < grid->seeds.size(); ++s) cell.add_experiment_ids();
    }
    for (size_t r = 0; r < grid->runs.size(); ++r) {
      const SweepRun& run = grid->runs[r];
      sweep.mutable_cells(run.cell)->set_experiment_ids(run.seed_index, ids[r]);
    }
    sweep.set_runs_total(static_cast<int>(grid->runs.size()));
    return stored;
  };
  // Listed as soon as its record exists, so that the follower refreshes it on any change
  // of its runs; the runs are queued only after that.
  absl::StatusOr<std::vector<v1::Experiment>> runs =
      experiments_.StartSweepRuns(specs, [&](const std::vector<std::string>& ids) {
        StoredSweep stored = make_sweep(ids);
        auto entry = std::make_shared<Entry>();
        entry->ordinal = stored.ordinal;
        entry->request_id = stored.request_id;
        entry->record = stored.record;
        absl::MutexLock lock(&mu_);
        if (!entry->request_id.empty()) request_ids_[entry->request_id] = id;
        sweeps_.emplace(id, entry);
        by_age_.push_back(std::move(entry));
        return stored;
      });
  if (!runs.ok()) {
    absl::MutexLock lock(&mu_);
    if (auto it = sweeps_.find(id); it != sweeps_.end()) {
      request_ids_.erase(it->second->request_id);
      by_age_.pop_back();  // the newest: start_mu_ is held
      sweeps_.erase(it);
    }
    return runs.status();
  }
  LOG(INFO) << "sweep " << id << ": " << grid->cells.size() << " cells x " << grid->seeds.size()
            << " seeds queued";
  absl::StatusOr<std::shared_ptr<Entry>> entry = Find(id);
  if (!entry.ok()) return entry.status();
  absl::MutexLock refresh(&refresh_mu_);
  Refresh(**entry);
  absl::ReaderMutexLock lock(&mu_);
  return (*entry)->record;
}

absl::StatusOr<v1::Sweep> SweepRegistry::GetSweep(absl::string_view id) const {
  absl::StatusOr<std::shared_ptr<Entry>> entry = Find(id);
  if (!entry.ok()) return entry.status();
  absl::ReaderMutexLock lock(&mu_);
  return (*entry)->record;
}

absl::StatusOr<v1::ListSweepsResponse> SweepRegistry::ListSweeps(
    const v1::ListSweepsRequest& request) const {
  const absl::StatusOr<int> page_size = PageSize(request.page_size());
  if (!page_size.ok()) return page_size.status();
  const absl::StatusOr<int64_t> before_or = OrdinalsBefore(request.page_token());
  if (!before_or.ok()) return before_or.status();
  const int64_t before = *before_or;
  v1::ListSweepsResponse response;
  absl::ReaderMutexLock lock(&mu_);
  int64_t last_ordinal = 0;
  for (auto it = by_age_.rbegin(); it != by_age_.rend(); ++it) {
    if ((*it)->ordinal >= before) continue;
    if (response.sweeps_size() == *page_size) {
      response.set_next_page_token(absl::StrCat(last_ordinal));
      break;
    }
    *response.add_sweeps() = SweepSummary((*it)->record);
    last_ordinal = (*it)->ordinal;
  }
  return response;
}

std::map<v1::ExperimentState, int> SweepRegistry::CountByState() const {
  std::map<v1::ExperimentState, int> counts;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& entry : by_age_) ++counts[entry->record.state()];
  return counts;
}

void SweepRegistry::CancelSweep(absl::string_view id,
                                std::function<void(absl::StatusOr<v1::Sweep>)> done) {
  absl::StatusOr<std::shared_ptr<Entry>> found = Find(id);
  if (!found.ok()) return done(found.status());
  std::shared_ptr<Entry> entry = *found;
  // The unfinished runs, the last queued first, so that the queue does not start the
  // sweep's next run while its earlier ones are being cancelled.
  std::vector<std::string> unfinished;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const v1::SweepCell& cell : entry->record.cells()) {
      for (const std::string& run : cell.experiment_ids()) unfinished.push_back(run);
    }
  }
  std::vector<std::string> to_cancel;
  for (auto it = unfinished.rbegin(); it != unfinished.rend(); ++it) {
    absl::StatusOr<v1::Experiment> run = experiments_.GetExperiment(*it);
    if (run.ok() && !IsFinished(run->state())) to_cancel.push_back(*it);
  }
  if (to_cancel.empty()) {
    return done(absl::FailedPreconditionError(
        absl::StrCat("sweep ", entry->record.id(), " has no run queued or running")));
  }
  struct Pending {
    std::atomic<int> left;
    std::function<void(absl::StatusOr<v1::Sweep>)> done;
  };
  auto pending = std::make_shared<Pending>();
  pending->left = static_cast<int>(to_cancel.size());
  pending->done = std::move(done);
  for (const std::string& run : to_cancel) {
    // A run that finished meanwhile (FAILED_PRECONDITION) is as good as cancelled.
    experiments_.CancelExperiment(run, [this, entry, pending](absl::StatusOr<v1::Experiment>) {
      if (--pending->left > 0) return;
      absl::MutexLock refresh(&refresh_mu_);
      Refresh(*entry);
      absl::ReaderMutexLock lock(&mu_);
      pending->done(entry->record);
    });
  }
}

absl::Status SweepRegistry::DeleteSweep(absl::string_view id) {
  absl::StatusOr<std::shared_ptr<Entry>> found = Find(id);
  if (!found.ok()) return found.status();
  Entry& entry = **found;
  absl::MutexLock refresh(&refresh_mu_);
  Refresh(entry);
  std::vector<std::string> runs;
  {
    absl::ReaderMutexLock lock(&mu_);
    if (!IsFinished(entry.record.state())) {
      return absl::FailedPreconditionError(
          absl::StrCat("sweep ", entry.record.id(), " has ",
                       entry.record.runs_total() - entry.record.runs_done(),
                       " runs queued or running; cancel it first (CancelSweep)"));
    }
    for (const v1::SweepCell& cell : entry.record.cells()) {
      for (const std::string& run : cell.experiment_ids()) runs.push_back(run);
    }
  }
  // The sweep first: a crash before its runs are gone leaves them as plain experiments.
  if (options_.store != nullptr) {
    if (absl::Status deleted = options_.store->DeleteSweep(entry.record.id()); !deleted.ok()) {
      return deleted;
    }
  }
  {
    absl::MutexLock lock(&mu_);
    request_ids_.erase(entry.request_id);
    by_age_.erase(std::find(by_age_.begin(), by_age_.end(), *found));
    sweeps_.erase(entry.record.id());
  }
  WakeReaders(id);
  absl::Status status;
  for (const std::string& run : runs) {
    absl::Status deleted = experiments_.DeleteExperiment(run);
    if (!deleted.ok() && !absl::IsNotFound(deleted)) status.Update(deleted);
  }
  if (!status.ok()) {
    return absl::Status(
        status.code(),
        absl::StrCat("sweep ", id, " is deleted, but not all of its runs: ", status.message()));
  }
  return absl::OkStatus();
}

}  // namespace gradlab
