"""Installation of monai_cardiac. Core requirements live in requirements.txt (one list for pip and setup)."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _requirements(name: str) -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


setup(
    name="monai_cardiac",
    version="0.1.0",
    description="MONAI building blocks and bundles for cardiac cine MRI motion tracking and segmentation",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["monai_cardiac", "monai_cardiac.*"]),
    install_requires=_requirements("requirements.txt"),
    extras_require={
        "dicom": ["pydicom>=2.4"],
        "test": ["pytest>=7.0", "pydicom>=2.4", "ruff>=0.5", "mypy>=2.4"],
        # peer registration methods for the side-by-side benchmark (monai_cardiac.baselines); antspyx caps numpy
        # and scipy below the core's newest versions, so keep this extra in its own environment (.ci/peers.sh)
        "peers": ["itk-elastix>=0.25", "antspyx>=0.6.3"],
    },
)
