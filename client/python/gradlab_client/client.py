"""The client: one gRPC channel to gradlabd and a method per thing a user does."""
import hashlib
import io
import os
import time
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Union)

import grpc
from google.protobuf import json_format, struct_pb2

from gradlab_client._proto.gradlab.v1 import experiment_service_pb2 as pb
from gradlab_client._proto.gradlab.v1 import experiment_service_pb2_grpc as pb_grpc
from gradlab_client.errors import GradlabError

DEFAULT_SERVER = "127.0.0.1:50051"
# Under gradlabd's default --max_request_bytes (256 KiB), with room for the framing.
UPLOAD_CHUNK_BYTES = 128 << 10
# A sweep of many cells, with every layer's aggregate, can pass gRPC's default 4 MiB.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20)]
PathLike = Union[str, os.PathLike]


def _read(path: Optional[PathLike]) -> Optional[bytes]:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def connect(server: Optional[str] = None, *, token: Optional[str] = None,
            tls: bool = False, tls_ca: Optional[PathLike] = None,
            tls_cert: Optional[PathLike] = None, tls_key: Optional[PathLike] = None,
            timeout: float = 10.0, reconnect_timeout: float = 60.0) -> "Client":
    """Connects to gradlabd as the `gradlab` CLI does.

    server: host:port; default $GRADLAB_SERVER, else 127.0.0.1:50051.
    token: a token of gradlabd's --auth_tokens_file; default $GRADLAB_TOKEN.
    tls, tls_ca: connect over TLS, verifying gradlabd with the PEM CA certificates in
        tls_ca (the system's when only tls=True). tls_cert and tls_key: a client
        certificate for mutual TLS (they imply TLS).
    timeout: seconds for each unary call (starts and uploads get at least two minutes).
    reconnect_timeout: how long the follow_* iterators try to reconnect a dropped stream.
    """
    server = server or os.environ.get("GRADLAB_SERVER") or DEFAULT_SERVER
    token = token if token is not None else os.environ.get("GRADLAB_TOKEN")
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together")
    if tls or tls_ca is not None or tls_cert is not None:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(tls_ca), private_key=_read(tls_key),
            certificate_chain=_read(tls_cert))
        channel = grpc.secure_channel(server, credentials, options=CHANNEL_OPTIONS)
    else:
        channel = grpc.insecure_channel(server, options=CHANNEL_OPTIONS)
    return Client(channel, token=token or None, timeout=timeout,
                  reconnect_timeout=reconnect_timeout)


def _spec(spec: Optional[Mapping[str, Any]], fields: Mapping[str, Any]) -> pb.ExperimentSpec:
    """An ExperimentSpec from a dict and keyword arguments (which win), by the proto's
    field names; ValueError naming a field that is not one."""
    values = dict(spec or {})
    values.update(fields)
    try:
        return json_format.ParseDict(values, pb.ExperimentSpec(), ignore_unknown_fields=False)
    except json_format.ParseError as e:
        raise ValueError(f"not an ExperimentSpec: {e}") from None


class Client:
    """gradlabd's ExperimentService, in Python terms. Thread-safe (gRPC channels are)."""

    def __init__(self, channel: grpc.Channel, *, token: Optional[str] = None,
                 timeout: float = 10.0, reconnect_timeout: float = 60.0):
        self._channel = channel
        self._stub = pb_grpc.ExperimentServiceStub(channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout
        self.reconnect_timeout = reconnect_timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # The one place where gRPC's errors become GradlabError.
    def _call(self, method: str, request, timeout: Optional[float] = None):
        try:
            return getattr(self._stub, method)(request, timeout=timeout or self.timeout,
                                               metadata=self._metadata)
        except grpc.RpcError as e:
            raise GradlabError.from_rpc_error(e, method) from None

    def _pages(self, method: str, request, field: str, limit: Optional[int] = None) -> list:
        """The items (`field`) of every page of a List call, newest first, up to `limit`."""
        items: list = []
        while True:
            page = self._call(method, request)
            items.extend(getattr(page, field))
            if not page.next_page_token or (limit and len(items) >= limit):
                return items[:limit] if limit else items
            request.page_token = page.next_page_token

    # Experiments.

    def start_experiment(self, spec: Optional[Mapping[str, Any]] = None, *,
                         request_id: str = "", **fields) -> pb.Experiment:
        """Queues an experiment: `spec` and/or keyword arguments by the ExperimentSpec
        field names (model="deep_cnn", dataset="fashion_mnist", epochs=3, ...); unset
        fields take the server's defaults. Returns it as queued, its spec resolved."""
        request = pb.StartExperimentRequest(spec=_spec(spec, fields), request_id=request_id)
        return self._call("StartExperiment", request, timeout=max(self.timeout, 120))

    def get_experiment(self, experiment_id: str) -> pb.Experiment:
        return self._call("GetExperiment", pb.GetExperimentRequest(id=experiment_id))

    def list_experiments(self, state: Optional[str] = None,
                         limit: Optional[int] = None) -> List[pb.Experiment]:
        """Newest first; `state` "QUEUED", "RUNNING", "SUCCEEDED", "FAILED" or "CANCELLED"."""
        request = pb.ListExperimentsRequest(page_size=min(limit or 1000, 1000))
        if state is not None:
            request.state = pb.ExperimentState.Value(state)
        return self._pages("ListExperiments", request, "experiments", limit)

    def cancel_experiment(self, experiment_id: str) -> pb.Experiment:
        """Once it has stopped (within one batch)."""
        return self._call("CancelExperiment", pb.CancelExperimentRequest(id=experiment_id),
                          timeout=max(self.timeout, 120))

    def delete_experiment(self, experiment_id: str) -> None:
        self._call("DeleteExperiment", pb.DeleteExperimentRequest(id=experiment_id))

    def server_info(self) -> pb.ServerInfo:
        return self._call("GetServerInfo", pb.GetServerInfoRequest())

    # Streams, reconnected.

    def _follow(self, method: str, request, position: Callable[[Any], None],
                deadline: Optional[float] = None) -> Iterator:
        """Yields the stream's messages; on UNAVAILABLE (a server restarting, a dropped
        connection) calls it again from where it was (`position` moves the request on
        past each message) for up to reconnect_timeout seconds. TimeoutError once
        time.monotonic() passes `deadline`."""
        retry_until = None
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                for message in getattr(self._stub, method)(request, timeout=left,
                                                           metadata=self._metadata):
                    retry_until = None
                    position(message)
                    yield message
                return
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                    raise TimeoutError(f"{method}: not finished in time") from None
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise GradlabError.from_rpc_error(e, method) from None
                now = time.monotonic()
                retry_until = retry_until or now + self.reconnect_timeout
                if now >= retry_until:
                    raise GradlabError.from_rpc_error(e, method) from None
                time.sleep(0.5)

    def follow_metrics(self, experiment_id: str, from_sequence: int = 0, follow: bool = True,
                       timeout: Optional[float] = None) -> Iterator[pb.MetricsEvent]:
        """Every MetricsEvent (state changes, epochs, batch progress, predictions) from
        `from_sequence` on, then (with follow) live ones until the experiment has finished.
        A dropped stream is resumed after the last event seen: none repeats, none is
        skipped (the server's events of an epoch a restart cut short are dropped by the
        server itself; see the .proto). TimeoutError after `timeout` seconds."""
        request = pb.StreamMetricsRequest(id=experiment_id, from_sequence=from_sequence,
                                          follow=follow)

        def after(event: pb.MetricsEvent) -> None:
            request.from_sequence = event.sequence + 1

        deadline = None if timeout is None else time.monotonic() + timeout
        return self._follow("StreamMetrics", request, after, deadline)

    def follow_gradients(self, experiment_id: str, from_step: int = 0, layers: str = "",
                         follow: bool = True) -> Iterator[pb.GradientSnapshot]:
        """Every gradient snapshot from `from_step` on (layers: an RE2 on parameter names),
        then live ones; reconnected like follow_metrics."""
        request = pb.StreamGradientsRequest(id=experiment_id, from_step=from_step,
                                            layers=layers, follow=follow)

        def after(snapshot: pb.GradientSnapshot) -> None:
            request.from_step = snapshot.step + 1

        return self._follow("StreamGradients", request, after)

    def follow_predictions(self, experiment_id: str,
                           follow: bool = True) -> Iterator[pb.Predictions]:
        """What the model predicts at epoch 0 (untrained) and after each epoch."""
        for event in self.follow_metrics(experiment_id, follow=follow):
            if event.HasField("predictions"):
                yield event.predictions

    def wait(self, experiment_id: str, timeout: Optional[float] = None,
             on_event: Optional[Callable[[pb.MetricsEvent], None]] = None) -> pb.Experiment:
        """Follows the experiment until it has finished (calling on_event with each event)
        and returns it; TimeoutError after `timeout` seconds."""
        for event in self.follow_metrics(experiment_id, timeout=timeout):
            if on_event is not None:
                on_event(event)
        return self.get_experiment(experiment_id)

    def epochs(self, experiment_id: str) -> List[Dict[str, Any]]:
        """The finished epochs so far, one plain dict each (epoch, train_loss,
        train_accuracy, test_loss, test_accuracy, best_test_accuracy, learning_rate,
        epoch_seconds, images_per_second); an epoch a restart repeated counts once."""
        by_epoch: Dict[int, Dict[str, Any]] = {}
        for event in self.follow_metrics(experiment_id, follow=False):
            if event.HasField("epoch_metrics"):
                row = json_format.MessageToDict(event.epoch_metrics,
                                                preserving_proto_field_name=True,
                                                including_default_value_fields=True)
                by_epoch[row["epoch"]] = row
        return [by_epoch[epoch] for epoch in sorted(by_epoch)]

    def epochs_frame(self, experiment_ids: Union[str, Iterable[str]]):
        """epochs() of one or more experiments as a pandas DataFrame, with an `experiment`
        column; needs pandas (Debian's python3-pandas), which nothing else here does."""
        import pandas  # noqa: only this method needs it

        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
        rows = [dict(experiment=i, **row) for i in ids for row in self.epochs(i)]
        return pandas.DataFrame(rows)

    # Sweeps.

    def start_sweep(self, base: Optional[Mapping[str, Any]] = None, *,
                    vary: Mapping[str, Sequence[Any]],
                    seeds: Union[int, Sequence[int]] = 1, name: str = "",
                    labels: Optional[Mapping[str, str]] = None, request_id: str = "",
                    **fields) -> pb.Sweep:
        """Queues one experiment per cell of the grid `vary` ({"batch_norm": [False, True],
        "init": ["pytorch_default", "kaiming_normal"]}) and seed: `seeds` a count (from the
        spec's seed, default 42) or a list. The base spec as start_experiment takes it."""
        sweep = pb.SweepSpec(name=name, base=_spec(base, fields), labels=dict(labels or {}))
        for field, values in vary.items():
            axis = sweep.axes.add(field=field)
            for value in values:
                axis.values.add().CopyFrom(_value(value))
        if isinstance(seeds, int):
            sweep.seed_count = seeds
        else:
            sweep.seeds.extend(seeds)
        request = pb.StartSweepRequest(sweep=sweep, request_id=request_id)
        return self._call("StartSweep", request, timeout=max(self.timeout, 120))

    def get_sweep(self, sweep_id: str) -> pb.Sweep:
        return self._call("GetSweep", pb.GetSweepRequest(id=sweep_id))

    def list_sweeps(self) -> List[pb.Sweep]:
        return self._pages("ListSweeps", pb.ListSweepsRequest(page_size=1000), "sweeps")

    def cancel_sweep(self, sweep_id: str) -> pb.Sweep:
        return self._call("CancelSweep", pb.CancelSweepRequest(id=sweep_id),
                          timeout=max(self.timeout, 120))

    def delete_sweep(self, sweep_id: str) -> None:
        self._call("DeleteSweep", pb.DeleteSweepRequest(id=sweep_id))

    def follow_sweep(self, sweep_id: str, from_sequence: int = 0, follow: bool = True,
                     timeout: Optional[float] = None) -> Iterator[pb.Sweep]:
        """The whole sweep as soon as its sequence is >= from_sequence, then (with follow)
        at each change until it has finished: its cells' runs and the server's aggregates.
        A slow reader gets the newest state rather than every one; reconnected like
        follow_metrics."""
        request = pb.StreamSweepRequest(id=sweep_id, from_sequence=from_sequence,
                                        follow=follow)

        def after(sweep: pb.Sweep) -> None:
            request.from_sequence = sweep.sequence + 1

        deadline = None if timeout is None else time.monotonic() + timeout
        return self._follow("StreamSweep", request, after, deadline)

    def wait_sweep(self, sweep_id: str, timeout: Optional[float] = None) -> pb.Sweep:
        """Follows the sweep until every run of it has finished and the server has
        aggregated them; returns it. TimeoutError after `timeout` seconds."""
        for _ in self.follow_sweep(sweep_id, timeout=timeout):
            pass
        return self.get_sweep(sweep_id)

    # Models.

    def upload_model(self, model: Union[PathLike, Any], name: Optional[str] = None
                     ) -> pb.ModelArtifact:
        """Stores a TorchScript module on the server, which checks it first: a file
        (torch.jit.script(net).save(path)) or a torch.jit.ScriptModule (when torch is
        importable). `name` defaults to the file's stem ("net.pt": "net"), or "model".
        Returns the artifact: its id (the file's sha256), its parameters and the datasets
        it fits; train it with start_experiment(model="uploaded:" + artifact.id, ...)."""
        if isinstance(model, (str, os.PathLike)):
            data = _read(model)
            name = name or os.path.splitext(os.path.basename(os.fspath(model)))[0]
        else:
            import torch  # a ScriptModule was given: torch is there

            buffer = io.BytesIO()
            torch.jit.save(model, buffer)  # (ScriptModule.save takes file names only)
            data = buffer.getvalue()
            name = name or "model"
        sha256 = hashlib.sha256(data).hexdigest()

        def messages():
            yield pb.UploadModelRequest(header=pb.UploadModelHeader(name=name, sha256=sha256))
            for at in range(0, len(data), UPLOAD_CHUNK_BYTES):
                yield pb.UploadModelRequest(chunk=data[at:at + UPLOAD_CHUNK_BYTES])

        # The server checks the model in a helper process before it answers.
        return self._call("UploadModel", messages(), timeout=max(self.timeout, 300))

    def get_model(self, model_id: str) -> pb.ModelArtifact:
        """By id, or by the name it was last uploaded under."""
        return self._call("GetModel", pb.GetModelRequest(id=model_id))

    def list_models(self) -> List[pb.ModelArtifact]:
        return list(self._call("ListModels", pb.ListModelsRequest()).models)

    def delete_model(self, model_id: str) -> None:
        self._call("DeleteModel", pb.DeleteModelRequest(id=model_id))

    def export_model(self, experiment_id: str, path: PathLike, which: str = "best",
                     format: str = "state_dict") -> int:
        """Writes the model of the best (or "last") finished epoch to `path`, through a
        temporary file: a state_dict for torch.load, or format="torchscript" (uploaded
        models) for torch.jit.load. Returns the epoch it is from."""
        request = pb.ExportModelRequest(
            id=experiment_id, which=pb.ExportModelRequest.Which.Value(which.upper()),
            format=pb.ExportModelRequest.Format.Value(format.upper()))
        partial = f"{os.fspath(path)}.partial"
        epoch, total, written = 0, 0, 0
        try:
            with open(partial, "wb") as out:
                stream = self._stub.ExportModel(request, timeout=max(self.timeout, 120),
                                                metadata=self._metadata)
                for chunk in stream:
                    if written == 0 and chunk.total_bytes:
                        epoch, total = chunk.epoch, chunk.total_bytes
                    out.write(chunk.data)
                    written += len(chunk.data)
            if written != total:
                raise GradlabError(grpc.StatusCode.DATA_LOSS,
                                   f"the export ended after {written} of {total} bytes",
                                   "ExportModel")
            os.replace(partial, path)
        except grpc.RpcError as e:
            raise GradlabError.from_rpc_error(e, "ExportModel") from None
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        return epoch


def _value(value: Any):
    """A google.protobuf.Value of a Python bool, number or string."""
    result = struct_pb2.Value()
    if isinstance(value, bool):
        result.bool_value = value
    elif isinstance(value, (int, float)):
        result.number_value = value
    elif isinstance(value, str):
        result.string_value = value
    else:
        raise ValueError(f"a sweep axis takes bools, numbers and strings, not {value!r}")
    return result
