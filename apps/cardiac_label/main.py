"""MONAI Label app serving the monai_cardiac bundles on cine MRI: segmentation, tracking and label propagation.

Start (from the repository root, in the app's environment, see README.md)::

    monailabel start_server --app apps/cardiac_label --studies /path/to/datastore --host 127.0.0.1 --port 8000 \
        --conf bundles bundles --conf zoo_source none --conf sam2 false

``--conf`` options:

- ``bundles``: folder holding ``joint/`` and ``probabilistic_motion/`` bundles (default: the repository's
  ``bundles/``). Each is served from its own ``configs/inference.json`` and ``models/model.pt`` (or, where the
  bundle has none, the weights it ships: ``models/acdc/model.pt``); a bundle without
  weights is left out of ``/info`` until it has some.
- ``preload``: ``true`` to load the networks at start.
- ``zoo_source``, ``sam2``: accepted for the usual MONAI Label command line; the app never downloads a bundle
  from a model zoo and has no SAM2 model, so nothing is fetched whatever they say.

Models (``/infer/<name>``): ``joint_segmentation``, ``joint_tracking``, ``probabilistic_tracking``,
``propagation``; trainer (``/train/joint``): the joint bundle's ``train_joint`` run on the datastore's labels.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Dict

from fastapi import HTTPException
from lib.infers import RequestError, bundle_infers
from lib.trainers import CineBundleTrainTask
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask

from monai_cardiac.errors import CineDataError

logger = logging.getLogger(__name__)

REPO_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


class CardiacLabelApp(MONAILabelApp):
    """The app: the joint and probabilistic motion bundles as MONAI Label models, and label propagation.

    Requests that cannot be served get a 4xx answer with the reason: 404 for a model name the app does not
    serve (or one whose bundle has no weights) and for an image id that is not in the datastore, 400 for bad
    input (not a 4D cine, a label off the cine's grid or with values outside 0-3, an unknown option, a frame
    outside the cine). The app reads only the datastore's images and the request's uploads (MONAI Label's
    temporary files), and removes the uploads whatever the outcome (MONAI Label itself removes them only after
    a successful answer). Messages call the uploads "the uploaded image" / "the uploaded label", not by their
    temporary file names.

    Args:
        app_dir: this folder.
        studies: the datastore.
        conf: ``--conf`` options (see the module docstring).
    """

    def __init__(self, app_dir: str, studies: str, conf: Dict[str, str]) -> None:
        root = Path(conf.get("bundles") or REPO_BUNDLES).resolve()
        self.bundles = {"joint": str(root / "joint"), "probabilistic": str(root / "probabilistic_motion")}
        for name, folder in self.bundles.items():
            if not os.path.isdir(os.path.join(folder, "configs")):
                logger.warning(f"{name} bundle not found: {folder}/configs does not exist")
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="cardiac_label",
            description="Cardiac cine MRI: segmentation and motion of every frame, label propagation through the "
            "cardiac cycle (monai_cardiac bundles)",
            version="0.1.0",
        )

    def init_infers(self) -> Dict[str, InferTask]:
        return bundle_infers(self.bundles, self.conf)

    def init_trainers(self) -> Dict[str, TrainTask]:
        task = CineBundleTrainTask(self.bundles["joint"], self.conf)
        return {"joint": task} if task.is_valid() else {}

    def infer(self, request: Dict[str, Any], datastore: Any = None) -> Dict[str, Any]:
        """MONAI Label's ``infer``, with unknown models and images and bad input answered as client errors."""
        uploads = {key: request[key] for key in ("image", "label") if _is_upload(request.get(key))}
        try:
            model = request.get("model")
            task = self._infers.get(model)
            if task is None or not task.is_valid():
                available = sorted(k for k, v in self._infers.items() if v.is_valid())
                reason = "is not served" if task is None else "has no weights (models/model.pt or models/acdc/model.pt)"
                raise HTTPException(status_code=404, detail=f"model {model!r} {reason}; available: {available}")
            if "image" not in uploads:
                self._check_datastore_image(request.get("image"), datastore or self.datastore())
            try:
                return super().infer(request, datastore)
            except (CineDataError, RequestError) as err:
                message = str(err)
                for key, path in uploads.items():
                    message = message.replace(path, f"the uploaded {key}")
                logger.info(f"bad infer request for {model}: {message}")
                raise HTTPException(status_code=400, detail=f"{model}: {message}") from err
        finally:
            for path in uploads.values():
                if os.path.isfile(path):
                    os.unlink(path)

    @staticmethod
    def _check_datastore_image(image: Any, datastore: Any) -> None:
        """Raise 404 unless ``image`` is an id of the datastore (or the path of one of its images)."""
        ids = list(datastore.list_images())
        if isinstance(image, str) and image and (image in ids or image in {datastore.get_image_uri(i) for i in ids}):
            return
        shown = ", ".join(sorted(ids)[:5]) + (", ..." if len(ids) > 5 else "")
        raise HTTPException(status_code=404, detail=f"image {image!r} is not in the datastore ({len(ids)} images: "
                            f"{shown}); give the id of a datastore image or upload the cine as 'file'")

    def bundle_path(self, model: str | None) -> str | None:
        """MONAI Label's look-up of a trainer's bundle, with unknown model names answered 404.

        MONAI Label's ``/train/<model>`` (and ``/batch/infer``) call this in the server before starting their
        background process, which would otherwise fail later, out of the client's sight, on an unknown name.
        """
        if model and model not in self._trainers and model not in self._infers:
            raise HTTPException(status_code=404, detail=f"model {model!r} is not served; trainers: "
                                f"{sorted(self._trainers)}, models: {sorted(self._infers)}")
        return super().bundle_path(model)


def _is_upload(path: Any) -> bool:
    """Whether ``path`` is a file MONAI Label's ``/infer`` endpoint wrote from the request (a temporary file)."""
    return (isinstance(path, str) and os.path.isabs(path) and os.path.dirname(path) == tempfile.gettempdir()
            and os.path.basename(path).startswith("tmp") and os.path.isfile(path))
