#include "server/store/state_maintenance.h"

#include <SQLiteCpp/Backup.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/store/checkpoint_files.h"
#include "server/store/model_files.h"
#include "server/store/state_dir_lock.h"
#include "server/store/store_format.h"

namespace gradlab {
namespace {

namespace fs = std::filesystem;
using store_format::Guard;

// Problems listed one by one up to this many; past it, counted.
constexpr size_t kMaxListedProblems = 200;

class Findings {
 public:
  explicit Findings(StateReport& report) : report_(report) {}
  ~Findings() {
    if (unlisted_ > 0) {
      report_.problems.push_back(absl::StrCat("... and ", unlisted_, " more problems"));
    }
  }
  void Problem(std::string line) {
    if (report_.problems.size() < kMaxListedProblems) {
      report_.problems.push_back(std::move(line));
    } else {
      ++unlisted_;
    }
  }
  void Checked(std::string line) { report_.checked.push_back(std::move(line)); }

 private:
  StateReport& report_;
  int64_t unlisted_ = 0;
};

// The database's own checks and every row's checksum.
void VerifyDatabase(SQLite::Database& db, const std::optional<StateMarker>& marker,
                    Findings& findings, std::map<std::string, int>& experiments,
                    std::vector<std::string>& model_ids) {
  SQLite::Statement integrity(db, "PRAGMA integrity_check(100)");
  while (integrity.executeStep()) {
    const std::string line = integrity.getColumn(0).getString();
    if (line != "ok") findings.Problem(absl::StrCat("SQLite's integrity check: ", line));
  }
  findings.Checked("SQLite's integrity check of every page");
  if (std::string problem = store_format::SchemaProblem(db); !problem.empty()) {
    findings.Problem(absl::StrCat("the database: ", problem));
    return;
  }
  const int version = db.execAndGet("PRAGMA user_version").getInt();
  const std::optional<StateMarker> info = store_format::StoreInfo(db);
  if (std::string problem = store_format::MarkerMismatch(info, marker); !problem.empty()) {
    findings.Problem(absl::StrCat("the database: ", problem));
  } else if (info.has_value()) {
    findings.Checked(absl::StrCat("store ", info->store_id, ": ", info->commits, " transactions",
                                  marker.has_value() ? ", as the marker says" : ""));
  }
  if (version < 2) {
    findings.Checked(absl::StrCat("schema version ", version,
                                  ": its rows have no checksums yet (gradlabd adds them when it "
                                  "next opens the folder)"));
    SQLite::Statement ids(db, "SELECT id FROM experiments");
    while (ids.executeStep()) experiments[ids.getColumn(0).getString()] = 0;
    return;
  }
  SQLite::Statement summaries(
      db, absl::StrCat("SELECT ", store_format::kSummaryColumns, " FROM experiments"));
  while (summaries.executeStep()) {
    experiments[summaries.getColumn(0).getString()] = 0;
    if (std::string problem = store_format::SummaryProblem(summaries); !problem.empty()) {
      findings.Problem(problem);
    }
  }
  findings.Checked(absl::StrCat(experiments.size(), " experiment summaries"));
  if (version >= 3) {
    SQLite::Statement sweeps(
        db, absl::StrCat("SELECT ", store_format::kSummaryColumns, " FROM sweeps"));
    int64_t sweep_count = 0;
    while (sweeps.executeStep()) {
      ++sweep_count;
      if (std::string problem =
              store_format::SummaryProblem(sweeps, store_format::SummaryKind::kSweep);
          !problem.empty()) {
        findings.Problem(problem);
      }
    }
    findings.Checked(absl::StrCat(sweep_count, " sweep summaries"));
  }
  if (version >= 4) {
    SQLite::Statement models(
        db, absl::StrCat("SELECT ", store_format::kSummaryColumns, " FROM models"));
    int64_t model_count = 0;
    while (models.executeStep()) {
      ++model_count;
      if (std::string problem =
              store_format::SummaryProblem(models, store_format::SummaryKind::kModel);
          !problem.empty()) {
        findings.Problem(problem);
      }
      model_ids.push_back(models.getColumn(0).getString());
    }
    findings.Checked(absl::StrCat(model_count, " uploaded models"));
  }
  SQLite::Statement events(db, absl::StrCat("SELECT ", store_format::kEventColumns,
                                            ", experiment_id FROM events "
                                            "ORDER BY experiment_id, sequence"));
  int64_t count = 0;
  StoredEvents scratch;
  while (events.executeStep()) {
    const std::string id = events.getColumn(5).getString();
    if (std::string problem = store_format::ReadEvent(id, events, scratch); !problem.empty()) {
      findings.Problem(problem);
    }
    scratch.metrics.clear();
    scratch.gradients.clear();
    int& last_epoch = experiments[id];
    last_epoch = std::max(last_epoch, events.getColumn(2).getInt());
    ++count;
  }
  findings.Checked(absl::StrCat(count, " events"));
}

void VerifyCheckpoints(const std::string& state_dir, const std::map<std::string, int>& experiments,
                       Findings& findings) {
  const fs::path folder = fs::path(state_dir) / store_format::kCheckpointsFolder;
  std::error_code error;
  int64_t files = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(folder, error)) {
    const std::string id = entry.path().filename().string();
    if (experiments.count(id) == 0) {
      findings.Checked(absl::StrCat("checkpoints of ", id,
                                    ": no experiment in the database has this id (left by a "
                                    "delete that was interrupted; gradlabd ignores them)"));
      continue;
    }
    CheckpointFiles checkpoints(entry.path().string());
    for (int epoch : checkpoints.Epochs()) {
      ++files;
      if (absl::StatusOr<std::string> read = checkpoints.Read(epoch); !read.ok()) {
        findings.Problem(std::string(read.status().message()));
      }
    }
  }
  findings.Checked(absl::StrCat(files, " checkpoint files"));
}

// Each uploaded model's file hashed again: missing or not its digest is a problem.
void VerifyModelFiles(const std::string& state_dir, const std::vector<std::string>& model_ids,
                      Findings& findings) {
  const ModelFiles files((fs::path(state_dir) / store_format::kModelsFolder).string());
  for (const std::string& id : model_ids) {
    if (absl::Status verified = files.Verify(id); !verified.ok()) {
      findings.Problem(absl::StrCat("uploaded model ", id, ": ", verified.message()));
    }
  }
  findings.Checked(absl::StrCat(model_ids.size(), " model files"));
}

absl::StatusOr<std::string> ReadWhole(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::ostringstream contents;
  contents << file.rdbuf();
  if (file.bad()) return absl::InternalError(absl::StrCat("cannot read ", path.string()));
  return std::move(contents).str();
}

// Everything VerifyStateDir checks, in the order it checks it.
void Verify(const std::string& state_dir, Findings& findings) {
  std::error_code error;
  const std::string path = (fs::path(state_dir) / store_format::kDatabaseFile).string();
  const std::string marker_path = (fs::path(state_dir) / StateMarker::kFileName).string();
  absl::StatusOr<std::optional<StateMarker>> marker = ReadStateMarker(marker_path);
  if (!marker.ok()) {
    findings.Problem(std::string(marker.status().message()));
    marker = std::nullopt;
  } else if (marker->has_value()) {
    findings.Checked(absl::StrCat("the marker ", marker_path));
  }
  if (!fs::exists(path, error) || fs::file_size(path, error) == 0) {
    if (marker->has_value()) {
      findings.Problem(absl::StrCat(path, " is missing or empty, but the marker says it had ",
                                    (*marker)->commits, " committed transactions"));
    } else {
      findings.Checked("no database: an empty state folder");
    }
    return;
  }
  std::map<std::string, int> experiments;  // id -> newest epoch with events
  std::vector<std::string> model_ids;
  absl::Status status = Guard(absl::StrCat("checking ", path), [&] {
    std::unique_ptr<SQLite::Database> db = store_format::OpenReadOnly(path);
    VerifyDatabase(*db, *marker, findings, experiments, model_ids);
  });
  if (!status.ok()) findings.Problem(std::string(status.message()));
  VerifyCheckpoints(state_dir, experiments, findings);
  VerifyModelFiles(state_dir, model_ids, findings);
}

}  // namespace

absl::StatusOr<StateReport> VerifyStateDir(const std::string& state_dir) {
  std::error_code error;
  if (!fs::is_directory(state_dir, error)) {
    return absl::NotFoundError(absl::StrCat("there is no state folder ", state_dir));
  }
  absl::StatusOr<std::unique_ptr<StateDirLock>> lock = StateDirLock::AcquireToRead(state_dir);
  if (!lock.ok()) return lock.status();
  StateReport report;
  {
    Findings findings(report);  // counts what it does not list when it goes
    Verify(state_dir, findings);
  }
  return report;
}

absl::Status BackUpStateDir(const std::string& state_dir, const std::string& destination) {
  const fs::path source_path = fs::path(state_dir) / store_format::kDatabaseFile;
  const fs::path target_path = fs::path(destination) / store_format::kDatabaseFile;
  std::error_code error;
  if (!fs::exists(source_path, error) || fs::file_size(source_path, error) == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("there is no state database to back up at ", source_path.string()));
  }
  if (fs::exists(destination, error) && !fs::is_empty(destination, error)) {
    return absl::InvalidArgumentError(absl::StrCat("the backup folder ", destination,
                                                   " is not empty; back up into a new folder"));
  }
  fs::create_directories(destination, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create the backup folder ", destination, ": ", error.message()));
  }
  std::optional<StateMarker> info;
  std::map<std::string, int> newest_epoch;  // of each experiment's stored events
  std::vector<std::string> model_ids;
  absl::Status status = Guard(absl::StrCat("backing up ", source_path.string()), [&] {
    // A reader beside the server; one step copies every page in one read transaction.
    SQLite::Database copy(target_path.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    {
      SQLite::Database source(source_path.string(), SQLite::OPEN_READONLY);
      SQLite::Backup backup(copy, source);
      backup.executeStep(-1);
    }
    info = store_format::StoreInfo(copy);
    SQLite::Statement ids(copy, "SELECT id FROM experiments");
    while (ids.executeStep()) newest_epoch[ids.getColumn(0).getString()] = 0;
    SQLite::Statement epochs(copy,
                             "SELECT experiment_id, MAX(epoch) FROM events GROUP BY experiment_id");
    while (epochs.executeStep()) {
      newest_epoch[epochs.getColumn(0).getString()] = epochs.getColumn(1).getInt();
    }
    if (copy.execAndGet("PRAGMA user_version").getInt() >= 4) {
      SQLite::Statement models(copy, "SELECT id FROM models");
      while (models.executeStep()) model_ids.push_back(models.getColumn(0).getString());
    }
  });
  if (!status.ok()) return status;
  // The uploaded models the copy has records of (a file is written before its record).
  const ModelFiles source_models((fs::path(state_dir) / store_format::kModelsFolder).string());
  for (const std::string& id : model_ids) {
    absl::StatusOr<std::string> path = source_models.PathOf(id);
    if (!path.ok()) continue;  // a damaged record: --check_state reports it
    absl::StatusOr<std::string> bytes = ReadWhole(*path);
    if (!bytes.ok()) return bytes.status();
    const fs::path target = fs::path(destination) / store_format::kModelsFolder;
    fs::create_directories(target, error);
    if (absl::Status written =
            WriteFileAtomically((target / fs::path(*path).filename()).string(), *bytes);
        !written.ok()) {
      return written;
    }
  }
  // The checkpoints of the copied experiments, up to the epoch the copy has events of: a
  // newer one (written after the snapshot) would resume past history the copy lacks.
  for (const auto& [id, epoch_limit] : newest_epoch) {
    const fs::path folder = fs::path(state_dir) / store_format::kCheckpointsFolder / id;
    CheckpointFiles source(folder.string());
    CheckpointFiles target(
        (fs::path(destination) / store_format::kCheckpointsFolder / id).string());
    for (int epoch : source.Epochs()) {
      if (epoch > epoch_limit) continue;
      absl::StatusOr<std::string> bytes = ReadWhole(source.PathOf(epoch));
      if (!bytes.ok()) continue;  // pruned by the server since it was listed
      fs::create_directories(target.dir(), error);
      if (absl::Status written = WriteFileAtomically(target.PathOf(epoch), *bytes); !written.ok()) {
        return written;
      }
    }
  }
  if (!info.has_value()) return absl::OkStatus();  // a version 1 database has no marker
  return WriteStateMarker((fs::path(destination) / StateMarker::kFileName).string(), *info);
}

}  // namespace gradlab
