// Uploading TorchScript models to the real gradlabd over a real gRPC channel: checked in
// its helper process, kept across a restart, and bad uploads refused while the server
// keeps serving.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/strip.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gradlab/v1/experiment_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/engine/testing/torchscript_fixtures.h"
#include "tests/testing/file_bytes.h"
#include "tests/testing/gradlabd_process.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class ModelUploadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_dir_ = FreshTestDir("model_upload");
    Start();
  }
  void Start() {
    server_.reset();
    absl::StatusOr<GradlabdProcess> server = StartGradlabd(
        GRADLABD_PATH,
        {"--state_dir=" + state_dir_.string(), "--max_model_bytes=1MB", "--model_check_seconds=3"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::make_unique<GradlabdProcess>(*std::move(server));
    stub_ = v1::ExperimentService::NewStub(
        grpc::CreateChannel(server_->grpc_address, grpc::InsecureChannelCredentials()));
  }
  // Sends `messages` as one UploadModel call.
  grpc::Status Send(const std::vector<v1::UploadModelRequest>& messages,
                    v1::ModelArtifact* artifact) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    std::unique_ptr<grpc::ClientWriter<v1::UploadModelRequest>> writer =
        stub_->UploadModel(&context, artifact);
    for (const v1::UploadModelRequest& message : messages) {
      if (!writer->Write(message)) break;  // the server has answered already
    }
    writer->WritesDone();
    return writer->Finish();
  }
  // The header, then `bytes` in chunks of 64 KiB.
  grpc::Status Upload(const std::string& bytes, const std::string& name, const std::string& sha256,
                      v1::ModelArtifact* artifact) {
    std::vector<v1::UploadModelRequest> messages(1);
    messages[0].mutable_header()->set_name(name);
    messages[0].mutable_header()->set_sha256(sha256);
    for (size_t at = 0; at < bytes.size(); at += 64 << 10) {
      messages.emplace_back().set_chunk(bytes.substr(at, 64 << 10));
    }
    return Send(messages, artifact);
  }
  grpc::Status UploadFixture(const std::string& fixture, const std::string& name,
                             v1::ModelArtifact* artifact) {
    const std::string bytes = ReadFileBytes(TorchScriptFixture(fixture));
    return Upload(bytes, name, Sha256Hex(bytes), artifact);
  }
  // The CLI against this server: its exit code and stdout, and its stderr into `err`.
  CommandResult Gradlab(std::vector<std::string> args, std::string* err = nullptr) {
    args.insert(args.begin(), {GRADLAB_PATH, "--server=" + server_->grpc_address});
    const std::string err_file = (state_dir_.parent_path() / "gradlab.err").string();
    if (err != nullptr) {
      args.insert(args.begin(), {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>" + err_file});
    }
    CommandResult result = RunCommand(args, {}, absl::Seconds(300));
    if (err != nullptr) *err = ReadFileBytes(err_file);
    return result;
  }
  // The experiment `gradlab --json get` prints.
  v1::Experiment GetExperiment(const std::string& id) {
    CommandResult got = Gradlab({"--json", "get", id});
    EXPECT_EQ(got.exit_code, 0) << got.out;
    v1::Experiment experiment;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(got.out, &experiment).ok()) << got.out;
    return experiment;
  }
  void ExpectServing() {
    grpc::ClientContext context;
    v1::ServerInfo info;
    EXPECT_TRUE(stub_->GetServerInfo(&context, {}, &info).ok());
  }

  fs::path state_dir_;
  std::unique_ptr<GradlabdProcess> server_;
  std::unique_ptr<v1::ExperimentService::Stub> stub_;
};

TEST_F(ModelUploadTest, AnUploadIsListedKeptAcrossARestartAndDeleted) {
  v1::ModelArtifact artifact;
  grpc::Status uploaded = UploadFixture("good.pt", "mynet", &artifact);
  ASSERT_TRUE(uploaded.ok()) << uploaded.error_message();
  EXPECT_EQ(artifact.name(), "mynet");
  EXPECT_EQ(artifact.parameter_count(), 1498);
  EXPECT_EQ(artifact.id(), Sha256Hex(ReadFileBytes(TorchScriptFixture("good.pt"))));
  EXPECT_TRUE(fs::exists(state_dir_ / "models" / (artifact.id() + ".pt")));

  Start();  // a restart
  grpc::ClientContext list_context;
  v1::ListModelsResponse listed;
  ASSERT_TRUE(stub_->ListModels(&list_context, {}, &listed).ok());
  ASSERT_EQ(listed.models_size(), 1);
  EXPECT_EQ(listed.models(0).SerializeAsString(), artifact.SerializeAsString());
  grpc::ClientContext get_context;
  v1::GetModelRequest get;
  get.set_id("mynet");
  v1::ModelArtifact got;
  ASSERT_TRUE(stub_->GetModel(&get_context, get, &got).ok());
  EXPECT_EQ(got.id(), artifact.id());

  grpc::ClientContext delete_context;
  v1::DeleteModelRequest remove;
  remove.set_id(artifact.id());
  v1::DeleteModelResponse removed;
  ASSERT_TRUE(stub_->DeleteModel(&delete_context, remove, &removed).ok());
  grpc::ClientContext gone_context;
  EXPECT_EQ(stub_->GetModel(&gone_context, get, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_FALSE(fs::exists(state_dir_ / "models" / (artifact.id() + ".pt")));
}

TEST_F(ModelUploadTest, BadUploadsGetTheirErrorAndTheServerKeepsServing) {
  const std::string good = ReadFileBytes(TorchScriptFixture("good.pt"));
  v1::ModelArtifact artifact;
  grpc::Status status = Upload(good, "net", std::string(64, '0'), &artifact);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("bytes received have sha256"));

  status = Upload(good.substr(0, good.size() / 2), "net", Sha256Hex(good), &artifact);
  EXPECT_THAT(status.error_message(), HasSubstr("the upload was cut short"));

  status = UploadFixture("from_file.pt", "thief", &artifact);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("operator aten::from_file"));

  status = UploadFixture("loop.pt", "spinner", &artifact);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("more than 3s of CPU time"));

  status = UploadFixture("state_dict.pt", "pickle", &artifact);
  EXPECT_THAT(status.error_message(), HasSubstr("not a TorchScript module"));

  const std::string big(2 << 20, 'x');
  status = Upload(big, "big", Sha256Hex(big), &artifact);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("--max_model_bytes"));

  std::vector<v1::UploadModelRequest> headless(1);
  headless[0].set_chunk("abc");
  status = Send(headless, &artifact);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("the first message of an upload is its header"));

  ExpectServing();
  grpc::ClientContext list_context;
  v1::ListModelsResponse listed;
  ASSERT_TRUE(stub_->ListModels(&list_context, {}, &listed).ok());
  EXPECT_EQ(listed.models_size(), 0);
  std::error_code error;
  EXPECT_TRUE(fs::is_empty(state_dir_ / "models", error)) << "a refused upload left a file";
}

// The CLI: `gradlab models upload FILE` names the model after the file and says what it
// fits; list, get and delete by name.
TEST_F(ModelUploadTest, TheCliUploadsListsAndDeletes) {
  const fs::path file = state_dir_.parent_path() / "mynet.pt";
  fs::copy_file(TorchScriptFixture("good.pt"), file, fs::copy_options::overwrite_existing);
  auto gradlab = [&](std::vector<std::string> args) { return Gradlab(std::move(args)); };
  CommandResult uploaded = gradlab({"models", "upload", file.string()});
  ASSERT_EQ(uploaded.exit_code, 0) << uploaded.out;
  EXPECT_THAT(uploaded.out, HasSubstr("model mynet ("));
  EXPECT_THAT(uploaded.out, HasSubstr("1498 parameters in 10 tensors"));
  EXPECT_THAT(uploaded.out, HasSubstr("  trains on cifar10\n"));
  EXPECT_THAT(uploaded.out, HasSubstr("  not on fashion_mnist: forward or backward failed"));
  CommandResult listed = gradlab({"models", "list"});
  EXPECT_THAT(listed.out, HasSubstr("mynet"));
  EXPECT_THAT(listed.out, HasSubstr("cifar10,synthetic"));
  EXPECT_EQ(gradlab({"models", "upload", TorchScriptFixture("from_file.pt")}).exit_code, 3);
  EXPECT_EQ(gradlab({"models", "upload", "/nonexistent/net.pt"}).exit_code, 5);
  EXPECT_EQ(gradlab({"models", "remove", "mynet"}).exit_code, 2);
  EXPECT_EQ(gradlab({"models", "delete", "mynet"}).exit_code, 0);
  EXPECT_EQ(gradlab({"models", "get", "mynet"}).exit_code, 3);
}

// The round trip a user makes, through the real server, CLI and PyTorch: a copy of
// simple_cnn for Fashion-MNIST, traced in PyTorch after torch.manual_seed(42), submitted
// with --model_file (uploaded on the way) and trained for an epoch beside the built-in
// simple_cnn of seed 42; exported as TorchScript and evaluated by PyTorch, which gets the
// server's own test loss (to the last bit) and accuracy. The two runs differ only by the built-in
// model's channels-last layout (an uploaded one trains in NCHW): float rounding (engine_test's
// AnUploadedSimpleCnnTrainsAsTheBuiltInOneDoes has them equal bit for bit in NCHW).
TEST_F(ModelUploadTest, AnUploadedModelTrainsIsExportedAndReloadsInPyTorch) {
  const fs::path file = state_dir_.parent_path() / "fashion_cnn.pt";
  fs::copy_file(TorchScriptFixture("simple_cnn_fashion.pt"), file,
                fs::copy_options::overwrite_existing);
  const std::string sha256 = Sha256Hex(ReadFileBytes(file.string()));
  const std::vector<std::string> spec = {"--dataset=fashion_mnist", "--epochs=1",
                                         "--max_train_samples=512", "--max_test_samples=256",
                                         "--batch_size=64",         "--learning_rate=0.01"};
  std::string err;
  // Its id, which submit prints.
  auto submit = [&](std::vector<std::string> flags) {
    flags.insert(flags.begin(), "submit");
    flags.insert(flags.end(), spec.begin(), spec.end());
    CommandResult submitted = Gradlab(flags, &err);
    EXPECT_EQ(submitted.exit_code, 0) << submitted.out << err;
    return std::string(absl::StripAsciiWhitespace(submitted.out));
  };
  const std::string id = submit({"--model_file=" + file.string()});
  EXPECT_THAT(err, HasSubstr("uploaded " + file.string() + " as model fashion_cnn\n"));
  submit({"--model_file=" + file.string()});
  EXPECT_THAT(err, HasSubstr(" is model fashion_cnn on the server already\n"));
  const std::string built_in_id = submit({"--model=simple_cnn"});
  for (const std::string& each : {id, built_in_id}) {
    CommandResult watched = Gradlab({"watch", each}, &err);
    ASSERT_EQ(watched.exit_code, 0) << watched.out << err;
  }

  // The record pins the id; the model cannot go while an experiment refers to it.
  const v1::Experiment experiment = GetExperiment(id);
  EXPECT_EQ(experiment.spec().model(), "uploaded:" + sha256);
  const v1::Experiment reference = GetExperiment(built_in_id);
  const v1::EpochMetrics& trained = experiment.last_metrics();
  EXPECT_EQ(trained.epoch(), 1);
  EXPECT_NEAR(trained.train_loss(), reference.last_metrics().train_loss(), 1e-3);
  EXPECT_NEAR(trained.test_loss(), reference.last_metrics().test_loss(), 1e-3);
  EXPECT_NEAR(trained.test_accuracy(), reference.last_metrics().test_accuracy(), 0.02);
  EXPECT_LT(trained.test_loss(), 2.25) << "it learned (chance: ln 10 = 2.3026)";
  CommandResult kept = Gradlab({"models", "delete", "fashion_cnn"});
  EXPECT_EQ(kept.exit_code, 3);

  // Exported as TorchScript, it is the server's trained model to PyTorch.
  const std::string exported = (state_dir_.parent_path() / "fashion_cnn_trained.pt").string();
  CommandResult export_result =
      Gradlab({"export", id, "-o", exported, "--which=last", "--format=torchscript"});
  ASSERT_EQ(export_result.exit_code, 0) << export_result.out;
  CommandResult evaluated =
      RunCommand({"/usr/bin/python3", "tests/reference/evaluate_export.py", exported,
                  "/usr/share/datasets/fashion-mnist", "256", "64"});
  ASSERT_EQ(evaluated.exit_code, 0) << evaluated.out;
  google::protobuf::Struct python;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(evaluated.out, &python).ok())
      << evaluated.out;
  EXPECT_DOUBLE_EQ(python.fields().at("accuracy").number_value(), trained.test_accuracy());
  EXPECT_EQ(python.fields().at("loss").number_value(), trained.test_loss());
  EXPECT_EQ(Gradlab({"export", built_in_id, "-o", exported, "--format=torchscript"}).exit_code, 3);
  EXPECT_EQ(Gradlab({"export", id, "-o", exported, "--format=onnx"}).exit_code, 2);

  // Specs that name no model it has, or one that does not fit the dataset.
  CommandResult unknown = Gradlab({"submit", "--model=uploaded:nosuch", "--dataset=synthetic"});
  EXPECT_EQ(unknown.exit_code, 3);
  CommandResult misfit =
      Gradlab({"submit", "--model=uploaded:fashion_cnn", "--dataset=cifar10"}, &err);
  // Said before whether cifar10 is on this server: the spec is wrong either way.
  EXPECT_EQ(misfit.exit_code, 3);
  EXPECT_THAT(err, HasSubstr("the uploaded model \"fashion_cnn\" does not train on "
                             "cifar10: forward or backward failed"));
  EXPECT_THAT(err, HasSubstr("it trains on fashion_mnist, mnist"));
  ExpectServing();
}

// A sweep of an uploaded model: `gradlab sweep --model_file` uploads it and every cell's run
// trains it, its record pinning the id.
TEST_F(ModelUploadTest, ASweepTrainsAnUploadedModelInEveryCell) {
  const fs::path file = state_dir_.parent_path() / "sweep_cnn.pt";
  fs::copy_file(TorchScriptFixture("simple_cnn_fashion.pt"), file,
                fs::copy_options::overwrite_existing);
  std::string err;
  CommandResult swept = Gradlab({"--json", "sweep", "--model_file=" + file.string(),
                                 "--vary=learning_rate=0.01,0.02", "--dataset=fashion_mnist",
                                 "--epochs=1", "--max_train_samples=256", "--max_test_samples=128",
                                 "--batch_size=64", "--nofollow"},
                                &err);
  ASSERT_EQ(swept.exit_code, 0) << swept.out << err;
  EXPECT_THAT(err, HasSubstr("uploaded " + file.string() + " as model sweep_cnn\n"));
  v1::Sweep sweep;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(swept.out, &sweep).ok()) << swept.out;
  ASSERT_EQ(sweep.cells_size(), 2);
  for (const v1::SweepCell& cell : sweep.cells()) {
    ASSERT_EQ(cell.experiment_ids_size(), 1);
    CommandResult watched = Gradlab({"watch", cell.experiment_ids(0)}, &err);
    EXPECT_EQ(watched.exit_code, 0) << watched.out << err;
    EXPECT_EQ(GetExperiment(cell.experiment_ids(0)).spec().model(),
              "uploaded:" + Sha256Hex(ReadFileBytes(file.string())));
  }
}

// A run of an uploaded model that the server's death interrupts goes on after the restart
// from its last checkpoint, with its model found again under the id its record pins, and
// ends with the numbers of a run that was never interrupted.
TEST_F(ModelUploadTest, ARunOfAnUploadedModelResumesAfterTheServerIsKilled) {
  v1::ModelArtifact artifact;
  grpc::Status uploaded = UploadFixture("simple_cnn_fashion.pt", "fashion_cnn", &artifact);
  ASSERT_TRUE(uploaded.ok()) << uploaded.error_message();
  const std::vector<std::string> submit = {
      "submit",         "--model=uploaded:fashion_cnn", "--dataset=fashion_mnist",
      "--epochs=3",     "--max_train_samples=1024",     "--max_test_samples=256",
      "--batch_size=64"};
  std::string err;
  CommandResult whole = Gradlab(submit, &err);
  ASSERT_EQ(whole.exit_code, 0) << whole.out << err;
  const std::string whole_id(absl::StripAsciiWhitespace(whole.out));
  ASSERT_EQ(Gradlab({"watch", whole_id}, &err).exit_code, 0) << err;

  CommandResult cut = Gradlab(submit, &err);
  ASSERT_EQ(cut.exit_code, 0) << cut.out << err;
  const std::string cut_id(absl::StripAsciiWhitespace(cut.out));
  const absl::Time deadline = absl::Now() + absl::Minutes(2);
  while (GetExperiment(cut_id).last_metrics().epoch() < 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_LT(GetExperiment(cut_id).last_metrics().epoch(), 3) << "it finished before the kill";
  server_->process.Signal(SIGKILL);
  ASSERT_TRUE(server_->process.Wait(absl::Seconds(10)).has_value());
  Start();
  ASSERT_EQ(Gradlab({"watch", cut_id}, &err).exit_code, 0) << err;
  const v1::Experiment resumed = GetExperiment(cut_id);
  const v1::Experiment uninterrupted = GetExperiment(whole_id);
  EXPECT_EQ(resumed.spec().model(), "uploaded:" + artifact.id());
  EXPECT_EQ(resumed.last_metrics().epoch(), 3);
  EXPECT_EQ(resumed.last_metrics().train_loss(), uninterrupted.last_metrics().train_loss());
  EXPECT_EQ(resumed.last_metrics().test_loss(), uninterrupted.last_metrics().test_loss());
  EXPECT_EQ(resumed.last_metrics().test_accuracy(), uninterrupted.last_metrics().test_accuracy());
}

}  // namespace
}  // namespace gradlab
