"""Building the component image (docker/Dockerfile) through the Docker SDK, offline if asked.

The build context is assembled in a temporary folder: the Dockerfile, the pinned
constraints, and a wheelhouse holding every wheel modelpress needs plus modelpress's
own. With `wheelhouse` given, nothing is downloaded at all and the build runs with
network mode none; without it, the wheelhouse is made first with `pip download`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from modelpress.errors import ModelpressError

ROOT = Path(__file__).resolve().parents[1]
DOCKER_DIR = ROOT / "docker"


def _source_checkout() -> None:
    if not (DOCKER_DIR / "Dockerfile").is_file() or not (ROOT / "pyproject.toml").is_file():
        raise ModelpressError(f"no docker/Dockerfile beside {ROOT}", "build the image from a modelpress source checkout")


def make_wheelhouse(out: Path, say: Callable[[str], None]) -> Path:
    """Every dependency wheel (pinned by docker/constraints.txt) into `out`; modelpress's own is
    built from the checkout each time the build context is assembled."""
    _source_checkout()
    out.mkdir(parents=True, exist_ok=True)
    say(f"downloading dependency wheels into {out} (pip download; needs the package index)")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(out),
                    "-c", str(DOCKER_DIR / "constraints.txt"), f"{ROOT}[server]"], check=True)
    # Some dependencies ship only an sdist (kfp-server-api); building it inside the offline image
    # would need setuptools from the index, so it becomes a wheel here.
    for sdist in [*out.glob("*.tar.gz"), *out.glob("*.zip")]:
        say(f"building a wheel of {sdist.name}")
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out),
                        str(sdist)], check=True)
        sdist.unlink()
    return out


def add_own_wheel(out: Path, say: Callable[[str], None]) -> None:
    """modelpress's own wheel, built from this checkout without the network."""
    say("building the modelpress wheel from this checkout")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(ROOT)], check=True)


def assemble_context(ctx: Path, wheelhouse: Path, say: Callable[[str], None]) -> Path:
    """The build context: Dockerfile, constraints.txt and wheelhouse/ (hard links where possible)."""
    _source_checkout()
    if not wheelhouse.is_dir() or not any(wheelhouse.glob("*.whl")):
        raise ModelpressError(f"wheelhouse {wheelhouse} holds no wheels",
                              "make one with `modelpress image wheelhouse DIR` where the index is reachable")
    ctx.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DOCKER_DIR / "Dockerfile", ctx / "Dockerfile")
    shutil.copyfile(DOCKER_DIR / "constraints.txt", ctx / "constraints.txt")
    wheels = ctx / "wheelhouse"
    wheels.mkdir(exist_ok=True)
    for whl in wheelhouse.glob("*.whl"):
        if whl.name.startswith("modelpress-"):
            continue  # never a stale wheel of our own: it is built below from this checkout
        try:
            (wheels / whl.name).hardlink_to(whl)
        except OSError:  # another filesystem
            shutil.copyfile(whl, wheels / whl.name)
    add_own_wheel(wheels, say)
    return ctx


def build_image(tag: str, base_image: str, wheelhouse: Path | None, say: Callable[[str], None]) -> str:
    """Build `tag` with the Docker SDK; returns the image id."""
    try:
        import docker
    except ImportError:
        raise ModelpressError("the Docker SDK is not installed", "pip install 'modelpress[image]'") from None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - docker raises several kinds here
        raise ModelpressError(f"no Docker engine answers ({str(exc).splitlines()[0][:200]})",
                              "start dockerd, or set DOCKER_HOST") from None
    with tempfile.TemporaryDirectory(prefix="modelpress-image-") as tmp:
        if wheelhouse is None:
            wheelhouse = make_wheelhouse(Path(tmp) / "downloaded", say)
        ctx = assemble_context(Path(tmp) / "context", wheelhouse, say)
        say(f"building {tag} from {base_image} (network none)")
        image_id = None
        for chunk in client.api.build(path=str(ctx), tag=tag, buildargs={"BASE_IMAGE": base_image},
                                      network_mode="none", rm=True, forcerm=True, decode=True):
            if "error" in chunk:
                raise ModelpressError(f"image build failed: {chunk['error'].strip()}",
                                      "see the build output above")
            if line := chunk.get("stream", "").rstrip():
                say(f"  {line}")
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
    image = client.images.get(image_id or tag)
    base = client.images.get(base_image)
    say(f"built {tag}: {image.attrs['Size'] / 2**20:.0f} MiB "
        f"({(image.attrs['Size'] - base.attrs['Size']) / 2**20:.0f} MiB over the base image)")
    return image_id or tag
