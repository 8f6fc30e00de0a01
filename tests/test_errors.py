"""brief_error_message: the input error is found behind the wrappers MONAI's config parser adds."""

from __future__ import annotations

from monai_cardiac.errors import CineDataError, brief_error_message, describe_error


def _wrapped(error: BaseException) -> RuntimeError:
    try:
        try:
            raise error
        except Exception as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression: ...") from inner
    except RuntimeError as outer:
        return outer


def test_the_cine_error_behind_monais_wrapper_is_reported():
    message = brief_error_message(_wrapped(CineDataError("expected a 4D cine, got 3D", "/data/flat.nii.gz")))
    assert message == "error: /data/flat.nii.gz: expected a 4D cine, got 3D"


def test_a_missing_file_is_reported_with_its_name():
    error = FileNotFoundError(2, "No such file or directory", "/models/model.pt")
    assert brief_error_message(_wrapped(error)) == "error: /models/model.pt: No such file or directory"


def test_programming_errors_keep_their_traceback():
    assert brief_error_message(_wrapped(KeyError("x"))) is None
    assert brief_error_message(TypeError("bad")) is None


def test_a_checkpoint_that_does_not_fit_is_summarised_in_one_line():
    from monai_cardiac.networks import JointMotionSegNet

    checkpoint = JointMotionSegNet(width_multiplier=0.0625).state_dict()
    try:
        JointMotionSegNet(width_multiplier=0.125, segmentation=False).load_state_dict(checkpoint)
    except RuntimeError as error:
        message = brief_error_message(_wrapped(error))
    assert message is not None and "\n" not in message
    assert message.startswith("error: the checkpoint does not fit JointMotionSegNet: ")
    assert "tensors of another shape (first: encoder." in message and "width_multiplier" in message
    unexpected = sum(k.startswith("seg_head.") for k in checkpoint)
    assert f"0 missing, {unexpected} unexpected" in message


def test_describe_error_gives_the_users_line_or_the_chain():
    wrapped = RuntimeError("Failed to evaluate ConfigExpression")
    wrapped.__cause__ = CineDataError("NaN in frame 2", "/d/a.nii.gz")
    assert describe_error(wrapped) == "/d/a.nii.gz: NaN in frame 2"
    chained = RuntimeError("applying transform LoadCined")
    chained.__cause__ = EOFError("Compressed file ended")
    assert describe_error(chained) == "EOFError: Compressed file ended <- RuntimeError: applying transform LoadCined"
