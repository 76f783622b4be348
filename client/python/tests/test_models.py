"""Uploading TorchScript models from a file and from a ScriptModule, training one and
reloading its export in PyTorch (Debian's python3-torch)."""
import grpc
import pytest

from gradlab_client import GradlabError, messages

torch = pytest.importorskip("torch")


class TinyCnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        x = torch.nn.functional.relu(self.conv(x))
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


def test_upload_train_export_and_reload(client, tmp_path):
    torch.manual_seed(0)
    scripted = torch.jit.script(TinyCnn())
    artifact = client.upload_model(scripted, name="tiny")
    assert artifact.name == "tiny"
    assert artifact.parameter_count == 8 * 3 * 9 + 8 + 8 * 10 + 10
    fits = {fit.dataset: fit.fits for fit in artifact.datasets}
    assert fits["synthetic"] and fits["cifar10"] and not fits["fashion_mnist"]

    # A file of it (TorchScript's zip names its folder after the file: other bytes), named
    # after the file; the same bytes again are the same model.
    path = tmp_path / "tiny.pt"
    scripted.save(str(path))
    from_file = client.upload_model(path)
    assert from_file.name == "tiny" and from_file.id != artifact.id
    assert client.upload_model(path).id == from_file.id
    assert [m.id for m in client.list_models()] == [from_file.id, artifact.id]
    assert client.get_model("tiny").id == from_file.id  # the newest of the name
    client.delete_model(artifact.id)

    run = client.start_experiment(model="uploaded:tiny", dataset="synthetic", epochs=1,
                                  max_train_samples=128, max_test_samples=64, batch_size=32)
    assert run.spec.model == "uploaded:" + from_file.id
    assert client.wait(run.id).state == messages.SUCCEEDED
    exported = tmp_path / "trained.pt"
    assert client.export_model(run.id, exported, which="last", format="torchscript") == 1
    trained = torch.jit.load(str(exported))
    assert not torch.equal(trained.fc.weight, scripted.fc.weight), "it is the trained module"
    assert trained(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    state_dict = tmp_path / "state_dict.pt"
    client.export_model(run.id, state_dict, which="last")
    assert torch.equal(torch.load(str(state_dict))["fc.weight"], trained.fc.weight)

    with pytest.raises(GradlabError) as in_use:
        client.delete_model("tiny")
    assert in_use.value.code == grpc.StatusCode.FAILED_PRECONDITION
    client.delete_experiment(run.id)
    client.delete_model("tiny")
    assert client.list_models() == []


def test_a_module_that_reads_files_is_refused_by_name(client):
    class Thief(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 10)

        def forward(self, x):
            stolen = torch.from_file("/etc/hostname", False, 1, dtype=torch.uint8)
            return self.fc(x.mean((2, 3))) + stolen.float().sum()

    with pytest.raises(GradlabError) as refused:
        client.upload_model(torch.jit.script(Thief()), name="thief")
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "operator aten::from_file" in refused.value.message
