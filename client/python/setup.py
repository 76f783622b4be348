"""Generates the gRPC stubs of gradlab's API from proto/ at build time (they are not
committed): Debian's protoc and grpc_python_plugin (protobuf-compiler and
protobuf-compiler-grpc, which gradlab's C++ build uses too), into the package
`gradlab_client._proto`. Debian's python3-grpc-tools (1.14) cannot: its protoc predates
proto3's `optional`, which the API uses.
"""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
PROTOS = ["gradlab/v1/experiment_service.proto", "gradlab/v1/worker_service.proto"]


def generate_stubs(destination):
    """Writes gradlab/v1/*_pb2.py and *_pb2_grpc.py under destination/gradlab_client/_proto,
    their imports made relative to that package."""
    out = os.path.join(destination, "gradlab_client", "_proto")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    plugin = shutil.which("grpc_python_plugin") or "/usr/bin/grpc_python_plugin"
    subprocess.run(["protoc", f"-I{PROTO_ROOT}", f"--python_out={out}", f"--grpc_out={out}",
                    f"--plugin=protoc-gen-grpc={plugin}", *PROTOS], check=True)
    for folder in (out, os.path.join(out, "gradlab"), os.path.join(out, "gradlab", "v1")):
        open(os.path.join(folder, "__init__.py"), "a").close()
    # protoc writes `from gradlab.v1 import x_pb2`: the package lives inside this one.
    for name in os.listdir(os.path.join(out, "gradlab", "v1")):
        path = os.path.join(out, "gradlab", "v1", name)
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("from gradlab.v1 import", "from . import"))


class BuildPyWithStubs(build_py):
    def run(self):
        super().run()
        generate_stubs(self.build_lib)


setup(cmdclass={"build_py": BuildPyWithStubs})
