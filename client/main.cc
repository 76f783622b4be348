// gradlab: the command-line client of gradlabd. See kUsage below, or `gradlab --help`.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <set>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/cli.h"
#include "common/sweep_grid.h"
#include "common/version.h"

// Global flags.
ABSL_FLAG(std::string, server, "",
          "gradlabd's address; default: $GRADLAB_SERVER, else 127.0.0.1:50051");
ABSL_FLAG(bool, json, false, "print one protobuf-JSON object per line, for scripts");
ABSL_FLAG(int, timeout, 10, "seconds to wait for a unary call (starts: at least 120)");
ABSL_FLAG(std::string, tls_ca, "", "TLS: PEM CA certificates to verify gradlabd with");
ABSL_FLAG(std::string, tls_cert, "", "TLS: a PEM client certificate, for mutual TLS");
ABSL_FLAG(std::string, tls_key, "", "TLS: the PEM private key of --tls_cert");
ABSL_FLAG(std::string, token, "",
          "a token of gradlabd's --auth_tokens_file; default: $GRADLAB_TOKEN");
ABSL_FLAG(int, reconnect_timeout, 60, "seconds watch keeps reconnecting a dropped stream");

// ExperimentSpec fields, for submit and compare; unset ones take the server's defaults.
ABSL_FLAG(std::optional<std::string>, model, std::nullopt,
          "simple_cnn, deep_cnn, resnet, cifar_resnet, mlp, or uploaded:ID_OR_NAME");
ABSL_FLAG(std::string, model_file, "",
          "submit, sweep: train this TorchScript file (uploaded first if the server lacks it)");
ABSL_FLAG(std::optional<std::string>, dataset, std::nullopt,
          "cifar10, fashion_mnist, mnist or synthetic");
ABSL_FLAG(std::optional<std::string>, data_dir, std::nullopt, "dataset folder on the server");
ABSL_FLAG(std::optional<int>, epochs, std::nullopt, "epochs [1, 1000]; default 20");
ABSL_FLAG(std::optional<int>, batch_size, std::nullopt, "batch size [1, 4096]; default 128");
ABSL_FLAG(std::optional<double>, learning_rate, std::nullopt, "SGD learning rate; default 0.001");
ABSL_FLAG(std::optional<double>, momentum, std::nullopt, "SGD momentum; default 0.9");
ABSL_FLAG(std::optional<double>, weight_decay, std::nullopt, "weight decay; default 0");
ABSL_FLAG(std::optional<int>, lr_step_size, std::nullopt, "StepLR step in epochs; default 0 (off)");
ABSL_FLAG(std::optional<double>, lr_gamma, std::nullopt,
          "StepLR and milestone factor; default 0.1");
ABSL_FLAG(std::vector<std::string>, lr_milestones, {},
          "MultiStepLR milestones, e.g. 82,123; see --lr_milestone_unit");
ABSL_FLAG(std::optional<std::string>, lr_milestone_unit, std::nullopt,
          "epochs (default) or iterations");
ABSL_FLAG(std::optional<int>, warmup_iterations, std::nullopt,
          "the first N steps train at --warmup_learning_rate; default 0");
ABSL_FLAG(std::optional<double>, warmup_learning_rate, std::nullopt,
          "warm-up rate; default learning_rate / 10");
ABSL_FLAG(std::optional<bool>, evaluate_at_init, std::nullopt,
          "evaluate the untrained model first (epoch 0's predictions); default true");
ABSL_FLAG(std::optional<std::string>, preset, std::nullopt,
          "he2016: He et al. 2016's CIFAR-10 recipe for the fields not given");
ABSL_FLAG(std::optional<uint64_t>, seed, std::nullopt, "seed; default 42");
ABSL_FLAG(std::optional<bool>, augment, std::nullopt, "crop and flip; default on for cifar10");
ABSL_FLAG(std::optional<bool>, batch_norm, std::nullopt,
          "BatchNorm; default on for resnet and mlp");
ABSL_FLAG(std::optional<bool>, skip_connections, std::nullopt, "resnets only; default on");
ABSL_FLAG(std::optional<int>, depth, std::nullopt, "cifar_resnet only: 6n+2 layers; default 20");
ABSL_FLAG(std::optional<std::string>, shortcut, std::nullopt,
          "cifar_resnet only: zero_pad (default) or projection");
ABSL_FLAG(std::optional<std::string>, init, std::nullopt,
          "pytorch_default, kaiming_normal or kaiming_normal_fan_in");
ABSL_FLAG(std::optional<int64_t>, max_train_samples, std::nullopt, "first N training samples");
ABSL_FLAG(std::optional<int64_t>, max_test_samples, std::nullopt, "first N test samples");
ABSL_FLAG(std::optional<int>, gradient_every_n_steps, std::nullopt,
          "gradient snapshot cadence; default 50");
ABSL_FLAG(std::optional<int>, threads, std::nullopt, "intra-op threads; default the server's");
ABSL_FLAG(std::optional<std::string>, precision, std::nullopt, "fp32 or bf16");
ABSL_FLAG(std::optional<int>, world_size, std::nullopt,
          "data-parallel: the server and world_size - 1 of its workers train it; default 1");
ABSL_FLAG(std::optional<std::string>, name, std::nullopt, "a name for people");
ABSL_FLAG(std::vector<std::string>, labels, {}, "labels, key=value,key2=value2");
ABSL_FLAG(std::string, request_id, "", "retrying with the same id does not submit twice");

// Command flags.
ABSL_FLAG(bool, follow, false, "keep following (submit, grads)");
ABSL_FLAG(std::string, state, "", "list: only QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED");
ABSL_FLAG(int, limit, 50, "list: at most this many, newest first");
ABSL_FLAG(std::optional<int64_t>, step, std::nullopt, "grads: the snapshot at or after step N");
ABSL_FLAG(bool, last, false, "grads: the latest snapshot (the default)");
ABSL_FLAG(std::string, layers, "", "grads: a regular expression on layer names");
// --init is the spec's initialisation scheme: the untrained model's predictions are --epoch=0.
ABSL_FLAG(std::optional<int>, epoch, std::nullopt,
          "preds: after epoch N; 0: the untrained model, before the first step");
ABSL_FLAG(std::vector<std::string>, models,
          std::vector<std::string>({"simple_cnn", "deep_cnn", "resnet"}),
          "compare: the models to compare");
ABSL_FLAG(std::vector<std::string>, ids, {}, "compare: existing experiments instead of new ones");
ABSL_FLAG(std::string, output, "", "export, report: the file to write (-o)");
ABSL_FLAG(std::string, which, "best", "export: best or last");
ABSL_FLAG(std::string, format, "",
          "export: state_dict (default) or torchscript; export-metrics: csv (the only one)");
ABSL_FLAG(std::string, table, "epochs",
          "export-metrics: epochs (a row per epoch) or predictions (a row per epoch, true "
          "and predicted class)");
ABSL_FLAG(std::string, vary, "", "sweep: an axis, FIELD=V1,V2,... (repeat for more axes)");
ABSL_FLAG(std::optional<int>, seeds, std::nullopt, "sweep: N seeds, --seed (default 42) to +N-1");
ABSL_FLAG(std::vector<std::string>, seed_list, {}, "sweep: these seeds, e.g. 1,7,42");

namespace {

constexpr char kUsage[] = R"(gradlab: submit and watch CNN trainings on a gradlabd server.

usage: gradlab [global flags] COMMAND [ARGS] [flags]

commands:
  submit [spec flags] [--model_file=FILE] [--follow] [--request_id=ID]
                        queue an experiment; print its id, or follow it like watch.
                        --model_file trains a TorchScript file, uploading it first
                        when the server does not have it (see models upload)
  list [--state=S] [--limit=N]
                        experiments, newest first
  get ID                one experiment, every field
  cancel ID             cancel a queued or running experiment
  watch ID              a progress bar while an epoch runs (on a terminal), one line per
                        epoch in the reference's format, then the final state; reconnects
                        and resumes if the connection drops
  preds ID [--epoch=N]  what the model predicts on the test split after epoch N (default:
                        the latest; 0: the untrained model): the confusion matrix
                        with row percentages, each class's share of the predictions and
                        its mean softmax output
  grads ID [--step=N | --last] [--layers=REGEX] [--follow]
                        per-layer gradient norms, weight norms, ratios and activation
                        spread, with a log-scale bar per layer
  compare [--models=a,b,c | --ids=x,y] [spec flags]
                        one experiment per model with the same settings, live progress,
                        then the side-by-side table of the reference experiment
  export ID -o FILE [--which=best|last] [--format=state_dict|torchscript]
                        the model of the best (default) or the last finished epoch, as a
                        PyTorch state_dict file: torch.load(FILE) in Python; an uploaded
                        model also as its trained TorchScript module (torch.jit.load)
  report ID... -o FILE  the experiments' curves and gradient flow, or a sweep's grid and
                        bands, as one self-contained HTML file (opens offline; several
                        experiment ids add a comparison)
  delete ID             remove a finished experiment, its history and its checkpoints
  sweep --vary FIELD=V1,V2 [--vary ...] [--seeds=N | --seed_list=A,B] [spec flags]
        [--model_file=FILE] [--nofollow] [--request_id=ID]
                        one experiment per cell of the grid (every value of each --vary
                        axis) and seed, queued together; shows each run's epochs, then
                        the table of each cell's mean +- std over its seeds. --name and
                        --labels are the sweep's; --nofollow prints its id
  models upload FILE [--name=NAME]
                        stores a TorchScript module (torch.jit.script(model).save(FILE))
                        on the server, which checks it first: what it fits and why not
  models [list] | models get ID | models delete ID
                        the uploaded models; ID is a model's id or name
  export-metrics ID [-o FILE] [--format=csv] [--table=epochs|predictions]
                        the epochs' metrics of an experiment, or of every run of a sweep
                        (ID a sweep's), as tidy CSV: one row per run and epoch, with its
                        sweep, cell, axes' values and seed; to stdout without -o.
                        --table=predictions: one row per run, epoch (0: untrained), true
                        and predicted class, with the count and the mean softmax
  sweeps [--limit=N]    sweeps, newest first
  sweep-get ID          a sweep's table
  sweep-cancel ID       cancel a sweep's queued and running runs
  sweep-delete ID       remove a finished sweep and all of its runs
  info                  the server's models, datasets and capacity
  health                the server's health (exit 0 when SERVING)

global flags:
  --server=HOST:PORT    default $GRADLAB_SERVER, else 127.0.0.1:50051
  --json                one protobuf-JSON object per line, for scripts
  --timeout=SECONDS     for unary calls (default 10; at least 120 for starts)
  --reconnect_timeout=SECONDS
                        how long watch retries a dropped stream (default 60)
  --tls_ca=FILE         connect over TLS, verifying gradlabd with these PEM CA
                        certificates (with --tls_cert alone: the system's)
  --tls_cert=FILE --tls_key=FILE
                        connect over TLS with this client certificate (mutual TLS)
  --token=TOKEN         a token gradlabd's --auth_tokens_file lists; default
                        $GRADLAB_TOKEN

spec flags (unset ones take the server's defaults, the reference experiment's):
  --model --dataset --data_dir --epochs --batch_size --learning_rate --momentum
  --weight_decay --lr_step_size --lr_gamma --seed --augment --batch_norm
  --skip_connections --init --max_train_samples --max_test_samples
  --gradient_every_n_steps --threads --precision --name --labels=k=v,k2=v2
  --world_size --depth --shortcut --lr_milestones=82,123 --lr_milestone_unit
  --warmup_iterations --warmup_learning_rate --evaluate_at_init
  --preset=he2016       He et al. 2016's CIFAR-10 recipe (SGD 0.9, weight decay 1e-4,
                        lr 0.1 /10 at 50% and 75% of the run, He fan-in init, 64k
                        iterations unless --epochs) for the spec flags not given
  (each is the ExperimentSpec field of the same name; see gradlab.v1 in the .proto)

exit codes:
  0  success (watch, submit --follow, compare: the experiments SUCCEEDED)
  1  an experiment ended FAILED or CANCELLED; health: not SERVING
  2  usage error: unknown command or flag, bad flag value, missing argument
  3  the server refused the request: invalid spec, unknown id, queue full, ...
  4  cannot reach gradlabd
  5  any other error
)";

const std::vector<std::string> kSpecFlags = {"model",
                                             "dataset",
                                             "data_dir",
                                             "epochs",
                                             "batch_size",
                                             "learning_rate",
                                             "momentum",
                                             "weight_decay",
                                             "lr_step_size",
                                             "lr_gamma",
                                             "seed",
                                             "augment",
                                             "batch_norm",
                                             "skip_connections",
                                             "init",
                                             "max_train_samples",
                                             "max_test_samples",
                                             "gradient_every_n_steps",
                                             "threads",
                                             "precision",
                                             "name",
                                             "labels",
                                             "world_size",
                                             "depth",
                                             "shortcut",
                                             "lr_milestones",
                                             "lr_milestone_unit",
                                             "warmup_iterations",
                                             "warmup_learning_rate",
                                             "evaluate_at_init",
                                             "preset"};

// The flags each command takes, besides the global ones.
std::map<std::string, std::set<std::string>> CommandFlags() {
  std::set<std::string> spec(kSpecFlags.begin(), kSpecFlags.end());
  std::set<std::string> submit = spec;
  submit.insert({"follow", "request_id", "model_file"});
  std::set<std::string> compare = spec;
  compare.insert({"models", "ids", "request_id"});
  std::set<std::string> sweep = spec;
  sweep.insert({"vary", "seeds", "seed_list", "follow", "request_id", "model_file"});
  return {{"submit", submit},
          {"sweep", sweep},
          {"sweeps", {"limit"}},
          {"export-metrics", {"output", "format", "table"}},
          {"sweep-get", {}},
          {"sweep-cancel", {}},
          {"sweep-delete", {}},
          {"list", {"state", "limit"}},
          {"get", {}},
          {"cancel", {}},
          {"delete", {}},
          {"export", {"output", "which", "format"}},
          {"report", {"output"}},
          {"watch", {}},
          {"grads", {"step", "last", "layers", "follow"}},
          {"preds", {"epoch"}},
          {"models", {"name"}},
          {"compare", compare},
          {"info", {}},
          {"health", {}}};
}

const std::set<std::string> kGlobalFlags = {"server", "json",     "timeout", "reconnect_timeout",
                                            "tls_ca", "tls_cert", "tls_key", "token"};

int UsageError(const std::string& message) {
  std::cerr << "gradlab: " << message << "\nRun 'gradlab --help' for usage.\n";
  return gradlab::kExitUsage;
}

// Parses argv with the flags above. Unlike absl::ParseCommandLine, which exits with 1 on
// a bad flag, this reports usage errors with gradlab's own exit code. Accepts --name=value,
// --name value (not for booleans), --name and --noname for booleans.
// --vary may be given more than once: each value is kept, in order, in `axes`.
int ParseArgs(int argc, char** argv, std::vector<std::string>& positional,
              std::set<std::string>& given, std::vector<std::string>& axes) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) positional.push_back(argv[i]);
      break;
    }
    if (!absl::StartsWith(arg, "-") || arg == "-") {
      positional.push_back(arg);
      continue;
    }
    absl::string_view body = absl::StripPrefix(absl::StripPrefix(arg, "-"), "-");
    std::string name(body.substr(0, body.find('=')));
    if (name == "o") name = "output";
    std::optional<std::string> value;
    if (body.find('=') != absl::string_view::npos)
      value = std::string(body.substr(body.find('=') + 1));
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    const bool negated = flag == nullptr && absl::StartsWith(name, "no") &&
                         absl::FindCommandLineFlag(name.substr(2)) != nullptr;
    if (negated) {
      name = name.substr(2);
      flag = absl::FindCommandLineFlag(name);
    }
    if (flag == nullptr || flag->Filename().find("client/main.cc") == std::string::npos) {
      return UsageError(absl::StrCat("unknown flag --", name));
    }
    const bool is_bool = flag->IsOfType<bool>() || flag->IsOfType<std::optional<bool>>();
    if (negated) {
      if (!is_bool || value.has_value())
        return UsageError(absl::StrCat("--no", name, " takes no value"));
      value = "false";
    } else if (!value.has_value()) {
      if (is_bool) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return UsageError(absl::StrCat("--", name, " needs a value"));
      }
    }
    std::string error;
    if (!flag->ParseFrom(*value, &error)) {
      return UsageError(absl::StrCat("--", name, "=", *value, ": ", error));
    }
    given.insert(name);
    if (name == "vary") axes.push_back(*value);
  }
  return gradlab::kExitOk;
}

template <typename T, typename Setter>
void SetIfGiven(const absl::Flag<std::optional<T>>& flag, Setter set) {
  if (std::optional<T> value = absl::GetFlag(flag); value.has_value()) set(*value);
}

// The spec the flags describe; fields whose flags are not given stay unset.
absl::StatusOr<gradlab::v1::StartExperimentRequest> RequestFromFlags() {
  gradlab::v1::StartExperimentRequest request;
  gradlab::v1::ExperimentSpec& s = *request.mutable_spec();
  SetIfGiven(FLAGS_model, [&](const std::string& v) { s.set_model(v); });
  SetIfGiven(FLAGS_dataset, [&](const std::string& v) { s.set_dataset(v); });
  SetIfGiven(FLAGS_data_dir, [&](const std::string& v) { s.set_data_dir(v); });
  SetIfGiven(FLAGS_epochs, [&](int v) { s.set_epochs(v); });
  SetIfGiven(FLAGS_batch_size, [&](int v) { s.set_batch_size(v); });
  SetIfGiven(FLAGS_learning_rate, [&](double v) { s.set_learning_rate(v); });
  SetIfGiven(FLAGS_momentum, [&](double v) { s.set_momentum(v); });
  SetIfGiven(FLAGS_weight_decay, [&](double v) { s.set_weight_decay(v); });
  SetIfGiven(FLAGS_lr_step_size, [&](int v) { s.set_lr_step_size(v); });
  SetIfGiven(FLAGS_lr_gamma, [&](double v) { s.set_lr_gamma(v); });
  for (const std::string& milestone : absl::GetFlag(FLAGS_lr_milestones)) {
    int value = 0;
    if (!absl::SimpleAtoi(milestone, &value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--lr_milestones: \"", milestone, "\" is not a whole number"));
    }
    s.add_lr_milestones(value);
  }
  SetIfGiven(FLAGS_lr_milestone_unit, [&](const std::string& v) { s.set_lr_milestone_unit(v); });
  SetIfGiven(FLAGS_warmup_iterations, [&](int v) { s.set_warmup_iterations(v); });
  SetIfGiven(FLAGS_warmup_learning_rate, [&](double v) { s.set_warmup_learning_rate(v); });
  SetIfGiven(FLAGS_evaluate_at_init, [&](bool v) { s.set_evaluate_at_init(v); });
  SetIfGiven(FLAGS_preset, [&](const std::string& v) { s.set_preset(v); });
  SetIfGiven(FLAGS_seed, [&](uint64_t v) { s.set_seed(v); });
  SetIfGiven(FLAGS_augment, [&](bool v) { s.set_augment(v); });
  SetIfGiven(FLAGS_batch_norm, [&](bool v) { s.set_batch_norm(v); });
  SetIfGiven(FLAGS_skip_connections, [&](bool v) { s.set_skip_connections(v); });
  SetIfGiven(FLAGS_init, [&](const std::string& v) { s.set_init(v); });
  SetIfGiven(FLAGS_max_train_samples, [&](int64_t v) { s.set_max_train_samples(v); });
  SetIfGiven(FLAGS_max_test_samples, [&](int64_t v) { s.set_max_test_samples(v); });
  SetIfGiven(FLAGS_gradient_every_n_steps, [&](int v) { s.set_gradient_every_n_steps(v); });
  SetIfGiven(FLAGS_threads, [&](int v) { s.set_threads(v); });
  SetIfGiven(FLAGS_precision, [&](const std::string& v) { s.set_precision(v); });
  SetIfGiven(FLAGS_world_size, [&](int v) { s.set_world_size(v); });
  SetIfGiven(FLAGS_depth, [&](int v) { s.set_depth(v); });
  SetIfGiven(FLAGS_shortcut, [&](const std::string& v) { s.set_shortcut(v); });
  SetIfGiven(FLAGS_name, [&](const std::string& v) { s.set_name(v); });
  for (const std::string& label : absl::GetFlag(FLAGS_labels)) {
    std::vector<std::string> parts = absl::StrSplit(label, absl::MaxSplits('=', 1));
    if (parts.size() != 2 || parts[0].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--labels: \"", label, "\" is not key=value"));
    }
    (*s.mutable_labels())[parts[0]] = parts[1];
  }
  request.set_request_id(absl::GetFlag(FLAGS_request_id));
  return request;
}

// The sweep the flags describe: the spec flags are its base (--name and --labels its
// own), each --vary an axis.
absl::StatusOr<gradlab::v1::StartSweepRequest> SweepRequestFromFlags(
    const std::vector<std::string>& axes) {
  absl::StatusOr<gradlab::v1::StartExperimentRequest> base = RequestFromFlags();
  if (!base.ok()) return base.status();
  gradlab::v1::StartSweepRequest request;
  gradlab::v1::SweepSpec& sweep = *request.mutable_sweep();
  *sweep.mutable_base() = base->spec();
  sweep.set_name(sweep.base().name());
  sweep.mutable_base()->clear_name();
  sweep.mutable_labels()->swap(*sweep.mutable_base()->mutable_labels());
  request.set_request_id(base->request_id());
  if (axes.empty()) return absl::InvalidArgumentError("sweep needs at least one --vary axis");
  for (const std::string& text : axes) {
    absl::StatusOr<gradlab::v1::SweepAxis> axis = gradlab::ParseSweepAxis(text);
    if (!axis.ok())
      return absl::InvalidArgumentError(absl::StrCat("--vary: ", axis.status().message()));
    *sweep.add_axes() = *std::move(axis);
  }
  if (absl::GetFlag(FLAGS_seeds).has_value() && !absl::GetFlag(FLAGS_seed_list).empty()) {
    return absl::InvalidArgumentError("--seeds and --seed_list exclude each other");
  }
  if (absl::GetFlag(FLAGS_seeds).has_value()) sweep.set_seed_count(*absl::GetFlag(FLAGS_seeds));
  for (const std::string& text : absl::GetFlag(FLAGS_seed_list)) {
    uint64_t seed;
    if (!absl::SimpleAtoi(text, &seed)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--seed_list: \"", text, "\" is not a whole number"));
    }
    sweep.add_seeds(seed);
  }
  return request;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h" || arg == "help") {
      std::cout << kUsage;
      return gradlab::kExitOk;
    }
    if (arg == "--version") {
      std::cout << "gradlab " << gradlab::kGradlabVersion << "\n";
      return gradlab::kExitOk;
    }
  }
  std::vector<std::string> positional;
  std::set<std::string> given;
  std::vector<std::string> axes;
  if (int code = ParseArgs(argc, argv, positional, given, axes); code != gradlab::kExitOk) {
    return code;
  }
  if (positional.empty()) return UsageError("no command given");
  const std::string command = positional[0];
  const auto flags_of = CommandFlags();
  auto allowed = flags_of.find(command);
  if (allowed == flags_of.end())
    return UsageError(absl::StrCat("unknown command \"", command, "\""));
  for (const std::string& name : given) {
    if (kGlobalFlags.count(name) == 0 && allowed->second.count(name) == 0) {
      return UsageError(absl::StrCat("--", name, " is not a flag of 'gradlab ", command, "'"));
    }
  }
  const bool takes_sweep_id =
      command == "sweep-get" || command == "sweep-cancel" || command == "sweep-delete";
  const bool takes_either_id = command == "export-metrics";
  const bool takes_id = command == "get" || command == "cancel" || command == "watch" ||
                        command == "grads" || command == "preds" || command == "delete" ||
                        command == "export" || takes_sweep_id || takes_either_id;
  if (takes_id && positional.size() != 2) {
    return UsageError(absl::StrCat("'gradlab ", command, "' takes one ",
                                   takes_either_id  ? "experiment or sweep"
                                   : takes_sweep_id ? "sweep"
                                                    : "experiment",
                                   " id"));
  }
  if (command == "models") {
    const std::string sub = positional.size() > 1 ? positional[1] : "list";
    const bool known = sub == "list" || sub == "upload" || sub == "get" || sub == "delete";
    // "models" and "models list" alone; the others with one argument.
    const size_t expected = sub != "list" ? 3 : positional.size() == 1 ? 1 : 2;
    if (!known || positional.size() != expected || (given.count("name") > 0 && sub != "upload")) {
      return UsageError(
          "'gradlab models' takes: upload FILE [--name=NAME] | list | get ID | delete ID");
    }
  }
  const bool takes_ids = command == "report";
  if (takes_ids && positional.size() < 2) {
    return UsageError("'gradlab report' takes one or more experiment or sweep ids");
  }
  if (!takes_id && !takes_ids && command != "models" && positional.size() != 1) {
    return UsageError(absl::StrCat("unexpected argument \"", positional[1], "\""));
  }

  gradlab::CliOptions options;
  options.server = absl::GetFlag(FLAGS_server);
  if (options.server.empty()) {
    const char* from_env = std::getenv("GRADLAB_SERVER");
    options.server = from_env != nullptr && *from_env != '\0' ? from_env : "127.0.0.1:50051";
  }
  options.json = absl::GetFlag(FLAGS_json);
  options.token = absl::GetFlag(FLAGS_token);
  if (options.token.empty()) {
    const char* from_env = std::getenv("GRADLAB_TOKEN");
    if (from_env != nullptr) options.token = from_env;
  }
  const gradlab::TlsPaths tls = {absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
                                 absl::GetFlag(FLAGS_tls_ca)};
  options.tls = !tls.cert.empty() || !tls.key.empty() || !tls.ca.empty();
  if (options.tls) {
    absl::StatusOr<gradlab::TlsPem> pem = gradlab::ReadTlsFiles(tls, "--tls_ca");
    if (!pem.ok()) return UsageError(std::string(pem.status().message()));
    options.tls_pem = *std::move(pem);
  }
  if (absl::GetFlag(FLAGS_timeout) <= 0 || absl::GetFlag(FLAGS_reconnect_timeout) < 0) {
    return UsageError("--timeout must be positive and --reconnect_timeout not negative");
  }
  options.timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout));
  options.reconnect_timeout = absl::Seconds(absl::GetFlag(FLAGS_reconnect_timeout));
  options.interactive = isatty(STDOUT_FILENO) && !options.json;
  gradlab::Cli cli(options, std::cout, std::cerr);

  const std::string model_file = absl::GetFlag(FLAGS_model_file);
  if (!model_file.empty() && given.count("model")) {
    return UsageError("--model_file and --model exclude each other");
  }
  if (command == "submit" || command == "compare") {
    absl::StatusOr<gradlab::v1::StartExperimentRequest> request = RequestFromFlags();
    if (!request.ok()) return UsageError(std::string(request.status().message()));
    if (command == "submit") {
      if (!model_file.empty()) {
        if (int code = cli.UseModelFile(model_file, *request->mutable_spec()); code != 0) {
          return code;
        }
      }
      return cli.Submit(*request, absl::GetFlag(FLAGS_follow));
    }
    if (given.count("model")) return UsageError("compare takes --models, not --model");
    return cli.Compare(absl::GetFlag(FLAGS_models), *request, absl::GetFlag(FLAGS_ids));
  }
  if (command == "sweep") {
    absl::StatusOr<gradlab::v1::StartSweepRequest> request = SweepRequestFromFlags(axes);
    if (!request.ok()) return UsageError(std::string(request.status().message()));
    if (!model_file.empty()) {
      if (int code = cli.UseModelFile(model_file, *request->mutable_sweep()->mutable_base());
          code != 0) {
        return code;
      }
    }
    const bool follow = given.count("follow") == 0 || absl::GetFlag(FLAGS_follow);
    return cli.StartSweep(*request, follow);
  }
  if (command == "sweeps") {
    if (absl::GetFlag(FLAGS_limit) < 1) return UsageError("--limit must be at least 1");
    return cli.ListSweeps(absl::GetFlag(FLAGS_limit));
  }
  if (command == "export-metrics") {
    if (given.count("format") && absl::GetFlag(FLAGS_format) != "csv") {
      return UsageError(absl::StrCat("--format: \"", absl::GetFlag(FLAGS_format), "\" is not csv"));
    }
    const std::string table = absl::GetFlag(FLAGS_table);
    if (table != "epochs" && table != "predictions") {
      return UsageError(absl::StrCat("--table: \"", table, "\" is neither epochs nor predictions"));
    }
    return cli.ExportMetrics(positional[1], absl::GetFlag(FLAGS_output),
                             table == "epochs" ? gradlab::Cli::ExportTable::kEpochs
                                               : gradlab::Cli::ExportTable::kPredictions);
  }
  if (command == "models") {
    const std::string sub = positional.size() > 1 ? positional[1] : "list";
    if (sub == "list") return cli.ListModels();
    if (sub == "get") return cli.GetModel(positional[2]);
    if (sub == "delete") return cli.DeleteModel(positional[2]);
    // Named after the file ("net.pt": "net") unless --name says otherwise.
    const std::optional<std::string> name = absl::GetFlag(FLAGS_name);
    return cli.UploadModel(
        positional[2],
        name.has_value() ? *name : std::filesystem::path(positional[2]).stem().string());
  }
  if (command == "sweep-get") return cli.GetSweep(positional[1]);
  if (command == "sweep-cancel") return cli.CancelSweep(positional[1]);
  if (command == "sweep-delete") return cli.DeleteSweep(positional[1]);
  if (command == "list") {
    gradlab::v1::ExperimentState state = gradlab::v1::EXPERIMENT_STATE_UNSPECIFIED;
    const std::string state_name = absl::GetFlag(FLAGS_state);
    if (!state_name.empty() && (!gradlab::v1::ExperimentState_Parse(state_name, &state) ||
                                state == gradlab::v1::EXPERIMENT_STATE_UNSPECIFIED)) {
      return UsageError(absl::StrCat("--state: \"", state_name,
                                     "\" is not one of QUEUED, RUNNING, SUCCEEDED, FAILED, "
                                     "CANCELLED"));
    }
    if (absl::GetFlag(FLAGS_limit) < 1) return UsageError("--limit must be at least 1");
    return cli.List(state, absl::GetFlag(FLAGS_limit));
  }
  if (command == "get") return cli.Get(positional[1]);
  if (command == "cancel") return cli.Cancel(positional[1]);
  if (command == "delete") return cli.Delete(positional[1]);
  if (command == "export") {
    const std::string which_name = absl::GetFlag(FLAGS_which);
    gradlab::v1::ExportModelRequest::Which which;
    if (which_name == "best") {
      which = gradlab::v1::ExportModelRequest::BEST;
    } else if (which_name == "last") {
      which = gradlab::v1::ExportModelRequest::LAST;
    } else {
      return UsageError(absl::StrCat("--which: \"", which_name, "\" is not one of best, last"));
    }
    if (absl::GetFlag(FLAGS_output).empty()) return UsageError("export needs -o FILE");
    const std::string format_name = absl::GetFlag(FLAGS_format);
    gradlab::v1::ExportModelRequest::Format format = gradlab::v1::ExportModelRequest::STATE_DICT;
    if (format_name == "torchscript") {
      format = gradlab::v1::ExportModelRequest::TORCHSCRIPT;
    } else if (!format_name.empty() && format_name != "state_dict") {
      return UsageError(
          absl::StrCat("--format: \"", format_name, "\" is not one of state_dict, torchscript"));
    }
    return cli.Export(positional[1], which, format, absl::GetFlag(FLAGS_output));
  }
  if (command == "report") {
    if (absl::GetFlag(FLAGS_output).empty()) return UsageError("report needs -o FILE");
    return cli.Report({positional.begin() + 1, positional.end()}, absl::GetFlag(FLAGS_output));
  }
  if (command == "watch") return cli.Watch(positional[1]);
  if (command == "grads") {
    if (absl::GetFlag(FLAGS_step).has_value() && absl::GetFlag(FLAGS_last)) {
      return UsageError("--step and --last exclude each other");
    }
    return cli.Grads(positional[1], absl::GetFlag(FLAGS_step), absl::GetFlag(FLAGS_layers),
                     absl::GetFlag(FLAGS_follow));
  }
  if (command == "preds") return cli.Preds(positional[1], absl::GetFlag(FLAGS_epoch));
  if (command == "info") return cli.Info();
  return cli.Health();
}
