"""Probabilistic motion model of Krebs et al. (STACOM 2019): a conditional VAE with a temporal network.

J. Krebs, T. Mansi, N. Ayache, H. Delingette, "Probabilistic motion modeling from medical image sequences:
application to cardiac cine-MRI", STACOM 2019. No public code exists for this paper; the choices it leaves
open are stated in :class:`ProbabilisticMotionModel`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from monai_cardiac.errors import CineDataError
from monai_cardiac.networks.blocks.motion_vae import MotionDecoder, MotionEncoder
from monai_cardiac.networks.blocks.temporal_conv import TemporalConvNet
from monai_cardiac.networks.blocks.velocity_smoothing import SpatioTemporalGaussianSmoothing
from monai_cardiac.networks.blocks.warp import DisplacementWarp, ScalingAndSquaring
from monai_cardiac.networks.utils import records_construction_arguments

__all__ = ["ProbabilisticMotionModel"]


class ProbabilisticMotionModel(nn.Module):
    """Probabilistic motion model: encoder ``q(z~_t|I_0, I_t)``, TCN ``p(z|z~, t/T)``, decoder ``p(I_t|z_t, I_0)``.

    A cine slice with ED first (frame 0, after ``ReorderFromED``) is split into the moving image
    ``I_0 = cine[0]`` and the ``T`` fixed frames ``I_1 ... I_T = cine[1:]``. Shapes below use ``B`` for the
    batch, ``T`` for the number of frames after ED, ``d`` for ``latent_dim`` and ``(H, W) = spatial_size``.

    Pipeline and the choices made where the paper is silent:

    - Encoder (:class:`MotionEncoder`): every pair ``(I_0, I_t)`` independently, batched as ``B * T`` pairs,
      gives the mean ``mu_t`` and log-variance ``logvar_t`` of ``z~_t`` (``d`` values each).
    - Temporal dropout sampling (training mode only): per batch element and time step an independent
      Bernoulli ``r_t`` with success probability ``temporal_dropout`` (``delta``) replaces the posterior
      sample ``mu_t + exp(logvar_t / 2) * eps`` by a prior sample ``N(0, I)``. In eval mode there is neither
      sampling nor dropout: ``z~_t = mu_t``.
    - TCN (:class:`TemporalConvNet`): ``z~`` as ``(B, d, T)`` plus the normalised time ``t / T`` for
      ``t = 1 ... T`` gives the motion matrix ``z`` of shape ``(B, d, T)``.
    - Decoder (:class:`MotionDecoder`): each column ``z_t`` with ``I_0`` gives a stationary velocity field
      ``v_t`` (voxels, channel order ``(H, W)``).
    - Regularisation (:class:`SpatioTemporalGaussianSmoothing`): Gaussian smoothing of the velocity sequence,
      ``sigma_mm`` in space (converted to voxels with ``spacing``) and ``sigma_frames`` over time, edges
      replicated in space and at both ends of the sequence.
    - Exponentiation: :class:`~monai_cardiac.networks.blocks.ScalingAndSquaring` (MONAI's ``DVF2DDF``, ``num_steps``
      squarings, bilinear, border padding so that a constant velocity gives exactly that translation) turns
      ``v_t`` into ``ddf_t = exp(v_t)``, which is ``u_{ED->t}`` in the project's pull convention: it lives on
      frame ``t``'s grid and ``warp(I_0, ddf_t) ~ I_t``. The inverse ``u_{t->ED} = exp(-v_t)`` lives on the
      ED grid and ``warp(I_t, exp(-v_t)) ~ I_0`` (motion compensation).
    - Warping: :class:`~monai_cardiac.networks.blocks.DisplacementWarp` (MONAI's ``Warp``), bilinear, border padding.

    API (all images ``float``, ``moving`` ``(B, 1, H, W)``, ``fixed`` ``(B, T, H, W)``; every method takes an
    optional ``spacing`` in mm overriding the constructor's for the spatial smoothing):

    - ``forward(moving, fixed)``: training path, returns a dict (see :meth:`forward`).
    - ``forward(cine)``: tensor-in / tensor-out path for MONAI inferers and bundles (see :meth:`forward`).
    - :meth:`track`, :meth:`compensate`, :meth:`encode`, :meth:`decode`, :meth:`simulate`,
      :meth:`reconstruct`, :meth:`transport`.

    Args:
        spatial_size: ``(H, W)`` of the images (the dense layers fix it); multiples of 8 with the defaults.
        latent_dim: ``d``, size of the code per time step.
        encoder_channels: channels of the encoder convolutions.
        encoder_strides: strides of the encoder convolutions.
        decoder_channels: channels of the decoder's transposed convolutions.
        decoder_latent_channels: channels of the decoder's first (dense) feature map.
        tcn_dilations: dilations of the TCN layers.
        tcn_kernel_size: kernel size of the TCN layers.
        padding_mode: TCN padding over time, ``"zeros"`` or ``"circular"``.
        temporal_dropout: ``delta``, probability that a time step takes a prior sample during training.
        sigma_mm: spatial smoothing of the velocities in mm (``sigma_G``).
        sigma_frames: temporal smoothing of the velocities in frames (``sigma_T``).
        spacing: default pixel spacing in mm, ``(H, W)`` order.
        num_steps: number of squarings of the scaling-and-squaring exponentiation.
        encoder_norm: normalisation after each encoder convolution (see :class:`MotionEncoder`: instance
            normalisation by default, a deviation from the paper that lets the code depend on ``I_t``),
            ``None`` for the paper's un-normalised encoder.
        initial_log_variance: starting bias of the encoder's log-variance layer (see :class:`MotionEncoder`).

    Raises:
        ValueError: on ``temporal_dropout`` outside ``[0, 1]`` and on the sub-modules' bad arguments.
    """

    training_only_arguments = ("temporal_dropout", "initial_log_variance")
    """Arguments that shape training only (the dropout of training mode, the initial bias): a checkpoint trained with
    other values fits a network built with these (e.g. the no-TDS model evaluated with the bundle's TDS network)."""

    @records_construction_arguments
    def __init__(
        self,
        spatial_size: Sequence[int] = (128, 128),
        latent_dim: int = 32,
        encoder_channels: Sequence[int] = (16, 32, 32, 4),
        encoder_strides: Sequence[int] = (2, 2, 2, 1),
        decoder_channels: Sequence[int] = (32, 32, 32),
        decoder_latent_channels: int = 32,
        tcn_dilations: Sequence[int] = (1, 2, 4, 8),
        tcn_kernel_size: int = 3,
        padding_mode: str = "zeros",
        temporal_dropout: float = 0.5,
        sigma_mm: float = 3.0,
        sigma_frames: float = 1.5,
        spacing: Sequence[float] = (1.5, 1.5),
        num_steps: int = 7,
        encoder_norm: str | tuple | None = "instance",
        initial_log_variance: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= temporal_dropout <= 1.0:
            raise ValueError(f"temporal_dropout must lie in [0, 1], got {temporal_dropout}.")
        self.temporal_dropout = float(temporal_dropout)
        self.latent_dim = latent_dim
        self.encoder = MotionEncoder(
            spatial_size,
            latent_dim,
            encoder_channels,
            encoder_strides,
            norm=encoder_norm,
            initial_log_variance=initial_log_variance,
        )
        self.spatial_size = self.encoder.spatial_size
        self.tcn = TemporalConvNet(latent_dim, tcn_dilations, tcn_kernel_size, padding_mode)
        self.decoder = MotionDecoder(spatial_size, latent_dim, decoder_channels, decoder_latent_channels)
        self.smoothing = SpatioTemporalGaussianSmoothing(sigma_mm, sigma_frames, spacing)
        self.exponentiation = ScalingAndSquaring(num_steps=num_steps, mode="bilinear", padding_mode="border")
        self.warp = DisplacementWarp(mode="bilinear", padding_mode="border")

    # ------------------------------------------------------------------ checks and shared steps
    def _check_moving(self, moving: torch.Tensor, source: str) -> None:
        """Raise a :class:`CineDataError` unless ``moving`` is an ED frame batch ``(B, 1, H, W)``."""
        size = self.spatial_size
        if moving.ndim != 4 or moving.shape[1] != 1 or tuple(moving.shape[2:]) != size:
            raise CineDataError(
                f"moving must be the ED frame of shape (B, 1, {size[0]}, {size[1]}) (the model was built for "
                f"spatial_size={size}; resample or crop first), got {tuple(moving.shape)}.",
                f"{source}(moving)",
            )

    def _check_pair(self, moving: torch.Tensor, fixed: torch.Tensor, source: str) -> None:
        """Raise a :class:`CineDataError` unless ``moving`` is ``(B, 1, H, W)`` and ``fixed`` ``(B, T, H, W)``."""
        self._check_moving(moving, source)
        size = self.spatial_size
        if fixed.ndim != 4 or fixed.shape[0] != moving.shape[0] or fixed.shape[1] < 1 or tuple(fixed.shape[2:]) != size:
            raise CineDataError(
                f"fixed must hold the frames after ED, shape ({moving.shape[0]}, T >= 1, {size[0]}, {size[1]}), "
                f"got {tuple(fixed.shape)}.",
                f"{source}(fixed)",
            )

    def posterior(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's posterior ``N(mu, exp(logvar))`` of every pair ``(I_0, I_t)`` (no sampling, no dropout).

        Args:
            moving: ``(B, 1, H, W)`` ED frame.
            fixed: ``(B, T, H, W)`` the frames after ED.

        Returns:
            ``(mu, logvar)``, each ``(B, T, d)``.
        """
        batch, steps = fixed.shape[:2]
        moving_pairs = moving.expand(batch, steps, *self.spatial_size).reshape(batch * steps, 1, *self.spatial_size)
        mu, logvar = self.encoder(moving_pairs, fixed.reshape(batch * steps, 1, *self.spatial_size))
        return mu.reshape(batch, steps, -1), logvar.reshape(batch, steps, -1)

    @staticmethod
    def _prior_sample(shape: Sequence[int], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Draw ``N(0, I)`` samples of ``shape`` on ``like``'s device and dtype."""
        return torch.randn(tuple(shape), generator=generator, device=like.device, dtype=like.dtype)

    # ------------------------------------------------------------------ building blocks of the API
    def encode(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """Motion matrix of a sequence from the posterior means (no sampling, no dropout).

        Args:
            moving: ED frame ``(B, 1, H, W)``.
            fixed: frames after ED ``(B, T, H, W)``.

        Returns:
            the motion matrix ``z`` of shape ``(B, d, T)``.

        Raises:
            CineDataError: on inputs of the wrong shape.
        """
        self._check_pair(moving, fixed, "ProbabilisticMotionModel.encode")
        mu, _ = self.posterior(moving, fixed)
        return self.tcn(mu.transpose(1, 2))

    def decode(
        self, z: torch.Tensor, moving: torch.Tensor, spacing: Sequence[float] | None = None
    ) -> dict[str, torch.Tensor]:
        """Motion of a sequence from its motion matrix, applied to an ED frame.

        Args:
            z: motion matrix ``(B, d, T)``.
            moving: ED frame ``(B, 1, H, W)`` the motion is conditioned on and applied to.
            spacing: pixel spacing in mm for the spatial smoothing; defaults to the constructor's.

        Returns:
            dict with ``"velocity"`` (smoothed ``v_t``, ``(B, T, 2, H, W)``, voxels), ``"ddf"``
            (``u_{ED->t} = exp(v_t)``, ``(B, T, 2, H, W)``, voxels), ``"inverse_ddf"``
            (``u_{t->ED} = exp(-v_t)``, same shape) and ``"warped"`` (``warp(I_0, u_{ED->t})``, ``(B, T, H, W)``).

        Raises:
            CineDataError: when ``z`` is not ``(B, d, T)`` with ``B`` the batch of ``moving``, or ``moving`` is
                not ``(B, 1, H, W)``.
        """
        self._check_moving(moving, "ProbabilisticMotionModel.decode")
        size = self.spatial_size
        if z.ndim != 3 or z.shape[0] != moving.shape[0] or z.shape[1] != self.latent_dim or z.shape[2] < 1:
            raise CineDataError(
                f"z must be a motion matrix of shape ({moving.shape[0]}, {self.latent_dim}, T >= 1), "
                f"got {tuple(z.shape)}.",
                "ProbabilisticMotionModel.decode(z)",
            )
        batch, _, steps = z.shape
        moving_pairs = moving.expand(batch, steps, *size).reshape(batch * steps, 1, *size)
        velocity = self.decoder(z.transpose(1, 2).reshape(batch * steps, self.latent_dim), moving_pairs)
        velocity = self.smoothing(velocity.reshape(batch, steps, 2, *size), spacing)
        flat_velocity = velocity.reshape(batch * steps, 2, *size)
        ddf = self.exponentiation(flat_velocity)
        inverse_ddf = self.exponentiation(-flat_velocity)
        warped = self.warp(moving_pairs, ddf)
        return {
            "velocity": velocity,
            "ddf": ddf.reshape(batch, steps, 2, *size),
            "inverse_ddf": inverse_ddf.reshape(batch, steps, 2, *size),
            "warped": warped.reshape(batch, steps, *size),
        }

    # ------------------------------------------------------------------ training and inference
    def forward(
        self,
        images: torch.Tensor,
        fixed: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        spacing: Sequence[float] | None = None,
    ) -> dict[str, torch.Tensor] | torch.Tensor:
        """Training path (two tensors) or tensor-in / tensor-out tracking path (one tensor).

        With ``fixed`` given, ``images`` is the ED frame ``(B, 1, H, W)`` and the result is a dict with the
        keys of :meth:`decode` and:

        - ``"mu"``, ``"logvar"``: posterior mean and log-variance, ``(B, T, d)``;
        - ``"z_tilde"``: the TCN's input codes ``z~``, ``(B, T, d)``;
        - ``"z"``: the motion matrix, ``(B, d, T)``;
        - ``"dropout_mask"``: ``(B, T)`` bool, ``True`` where ``z~_t`` is a prior sample.

        In training mode ``z~`` is sampled (reparameterisation) with temporal dropout sampling; in eval mode
        it is the posterior mean and the mask is all ``False``.

        With ``fixed`` omitted, ``images`` is a whole cine ``(B, N, H, W)`` with ED first (``N = T + 1 >= 2``),
        and the result is :meth:`track`'s displacement sequence with a zero field for ED prepended, flattened
        to ``(B, 2 * N, H, W)``: channels ``2 n`` and ``2 n + 1`` hold the ``H`` and ``W`` components (voxels)
        of ``u_{ED->n}`` (the conventions' ``(N, 2, H, W)`` displacement sequence with frames and components
        merged). This path never samples nor drops steps, whatever the mode.

        Args:
            images: ED frame ``(B, 1, H, W)`` with ``fixed``, or the cine ``(B, N, H, W)`` without.
            fixed: frames after ED ``(B, T, H, W)``.
            generator: random generator (on the model's device) for the training-mode draws.
            spacing: pixel spacing in mm for the spatial smoothing; defaults to the constructor's.

        Returns:
            the dict described above, or the ``(B, 2 * N, H, W)`` tensor.

        Raises:
            CineDataError: on inputs of the wrong shape.
        """
        if fixed is None:
            return self._track_cine(images, spacing)
        self._check_pair(images, fixed, "ProbabilisticMotionModel.forward")
        mu, logvar = self.posterior(images, fixed)
        batch, steps = fixed.shape[:2]
        if self.training:
            eps = self._prior_sample(mu.shape, mu, generator)
            posterior = mu + torch.exp(0.5 * logvar) * eps
            draws = torch.rand((batch, steps), generator=generator, device=mu.device)
            dropout_mask = draws < self.temporal_dropout
            prior = self._prior_sample(mu.shape, mu, generator)
            z_tilde = torch.where(dropout_mask.unsqueeze(-1), prior, posterior)
        else:
            dropout_mask = torch.zeros((batch, steps), dtype=torch.bool, device=mu.device)
            z_tilde = mu
        z = self.tcn(z_tilde.transpose(1, 2))
        out = self.decode(z, images, spacing)
        out.update(mu=mu, logvar=logvar, z_tilde=z_tilde, z=z, dropout_mask=dropout_mask)
        return out

    def _track_cine(self, cine: torch.Tensor, spacing: Sequence[float] | None) -> torch.Tensor:
        """Tensor path of :meth:`forward`: cine ``(B, N, H, W)`` to displacements ``(B, 2 * N, H, W)``."""
        if cine.ndim != 4 or cine.shape[1] < 2:
            raise CineDataError(
                f"expected a cine of shape (B, N >= 2, H, W) with ED first, got {tuple(cine.shape)}.",
                "ProbabilisticMotionModel.forward(images)",
            )
        ddf = self.track(cine[:, :1], cine[:, 1:], spacing)
        ddf = torch.cat([torch.zeros_like(ddf[:, :1]), ddf], dim=1)
        return ddf.reshape(cine.shape[0], -1, *self.spatial_size)

    def track(
        self, moving: torch.Tensor, fixed: torch.Tensor, spacing: Sequence[float] | None = None
    ) -> torch.Tensor:
        """Displacements ``u_{ED->t}`` of a sequence from the posterior means (deterministic).

        Args:
            moving: ED frame ``(B, 1, H, W)``.
            fixed: frames after ED ``(B, T, H, W)``.
            spacing: pixel spacing in mm for the spatial smoothing; defaults to the constructor's.

        Returns:
            ``u_{ED->t}`` of shape ``(B, T, 2, H, W)`` in voxels; ``warp(I_0, u_{ED->t}) ~ I_t``.

        Raises:
            CineDataError: on inputs of the wrong shape.
        """
        return self.decode(self.encode(moving, fixed), moving, spacing)["ddf"]

    def compensate(
        self, moving: torch.Tensor, fixed: torch.Tensor, spacing: Sequence[float] | None = None
    ) -> dict[str, torch.Tensor]:
        """Motion compensation: every frame warped back onto ED with ``exp(-v_t)`` (posterior means).

        Args:
            moving: ED frame ``(B, 1, H, W)``.
            fixed: frames after ED ``(B, T, H, W)``.
            spacing: pixel spacing in mm for the spatial smoothing; defaults to the constructor's.

        Returns:
            dict with ``"compensated"`` (``warp(I_t, u_{t->ED})``, ``(B, T, H, W)``, each ``~ I_0``) and
            ``"inverse_ddf"`` (``u_{t->ED} = exp(-v_t)``, ``(B, T, 2, H, W)``, voxels, on the ED grid).

        Raises:
            CineDataError: on inputs of the wrong shape.
        """
        inverse_ddf = self.decode(self.encode(moving, fixed), moving, spacing)["inverse_ddf"]
        batch, steps = fixed.shape[:2]
        frames = fixed.reshape(batch * steps, 1, *self.spatial_size)
        compensated = self.warp(frames, inverse_ddf.reshape(batch * steps, 2, *self.spatial_size))
        return {"compensated": compensated.reshape(fixed.shape), "inverse_ddf": inverse_ddf}

    def simulate(
        self,
        moving: torch.Tensor,
        num_frames: int,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
        spacing: Sequence[float] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Motion sequences sampled from the prior, given only the ED frame.

        Every ``z~_t`` is drawn from ``N(0, I)`` (one draw of shape ``(B, num_samples, T, d)``), passed through
        the TCN with times ``t / T`` and decoded on ``moving``.

        Args:
            moving: ED frame ``(B, 1, H, W)``.
            num_frames: ``T``, the number of frames after ED to generate.
            num_samples: number of sequences per ED frame.
            generator: random generator (on the model's device).
            spacing: pixel spacing in mm for the spatial smoothing; defaults to the constructor's.

        Returns:
            dict with the keys of :meth:`decode`, each with a sample axis after the batch axis
            (e.g. ``"ddf"`` ``(B, num_samples, T, 2, H, W)``), plus ``"z_tilde"`` ``(B, num_samples, T, d)``
            and ``"z"`` ``(B, num_samples, d, T)``.

        Raises:
            ValueError: when ``num_frames`` or ``num_samples`` is smaller than 1.
            CineDataError: when ``moving`` has the wrong shape.
        """
        if num_frames < 1 or num_samples < 1:
            raise ValueError(f"num_frames and num_samples must be at least 1, got {num_frames}, {num_samples}.")
        self._check_moving(moving, "ProbabilisticMotionModel.simulate")
        batch = moving.shape[0]
        z_tilde = self._prior_sample((batch, num_samples, num_frames, self.latent_dim), moving, generator)
        z = self.tcn(z_tilde.reshape(batch * num_samples, num_frames, self.latent_dim).transpose(1, 2))
        out = self.decode(z, moving.repeat_interleave(num_samples, dim=0), spacing)
        out["z"] = z
        out = {key: value.reshape(batch, num_samples, *value.shape[1:]) for key, value in out.items()}
        out["z_tilde"] = z_tilde
        return out

    def reconstruct(
        self,
        moving: torch.Tensor,
        fixed: torch.Tensor,
        given: torch.Tensor | Sequence[int],
        generator: torch.Generator | None = None,
        spacing: Sequence[float] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Full motion from a subset of frames (temporal super-resolution).

        Given steps use the posterior mean ``mu_t``; the others take a prior sample ``N(0, I)`` (one draw of
        shape ``(B, T, d)`` for all steps, of which the given ones are discarded), and the TCN fills them from
        their neighbours. The frames of ``fixed`` that are not given are never used, so they may hold anything
        finite (e.g. zeros). All frames given reproduces :meth:`track`; none given reproduces
        :meth:`simulate` with ``num_samples=1`` and the same generator state. The draws depend only on the
        generator state and ``(B, T, d)``, so re-seeding the generator for every slice of a volume gives all
        slices the same prior codes, as Krebs et al. do.

        Args:
            moving: ED frame ``(B, 1, H, W)``.
            fixed: the sequence after ED at full temporal resolution, ``(B, T, H, W)``.
            given: which steps are observed: a bool tensor ``(T,)`` or ``(B, T)``, or a sequence of 0-based
                indices into ``fixed``'s time axis (index ``i`` is cine frame ``i + 1``, time ``(i + 1) / T``).
                E.g. every 2nd cine frame ``range(1, T, 2)``, only the 10th cine frame (ED = 1st) ``[8]``.
            generator: random generator (on the model's device) for the prior samples.
            spacing: pixel spacing in mm for the spatial smoothing; defaults to the constructor's.

        Returns:
            dict with the keys of :meth:`decode` plus ``"z_tilde"`` ``(B, T, d)``, ``"z"`` ``(B, d, T)`` and
            ``"given"`` ``(B, T)`` bool.

        Raises:
            CineDataError: on inputs of the wrong shape or indices outside ``[0, T)``.
        """
        self._check_pair(moving, fixed, "ProbabilisticMotionModel.reconstruct")
        batch, steps = fixed.shape[:2]
        given_mask = self._given_mask(given, batch, steps, fixed.device)
        mu, _ = self.posterior(moving, fixed)
        prior = self._prior_sample(mu.shape, mu, generator)
        z_tilde = torch.where(given_mask.unsqueeze(-1), mu, prior)
        z = self.tcn(z_tilde.transpose(1, 2))
        out = self.decode(z, moving, spacing)
        out.update(z_tilde=z_tilde, z=z, given=given_mask)
        return out

    @staticmethod
    def _given_mask(
        given: torch.Tensor | Sequence[int], batch: int, steps: int, device: torch.device
    ) -> torch.Tensor:
        """``(B, T)`` bool mask of observed steps from a bool mask or a sequence of indices."""
        source = "ProbabilisticMotionModel.reconstruct(given)"
        values = torch.as_tensor(given)
        if values.numel() == 0:
            return torch.zeros((batch, steps), dtype=torch.bool, device=device)
        if values.dtype == torch.bool:
            if values.shape not in ((steps,), (batch, steps)):
                raise CineDataError(
                    f"a bool mask must have shape ({steps},) or ({batch}, {steps}), got {tuple(values.shape)}.", source
                )
            return values.to(device).expand(batch, steps)
        if values.is_floating_point() or values.is_complex() or values.ndim != 1:
            raise CineDataError(f"expected a bool mask or a 1-D sequence of integer indices, got {given}.", source)
        if bool(((values < 0) | (values >= steps)).any()):
            raise CineDataError(f"indices must lie in [0, {steps}) (frames after ED), got {values.tolist()}.", source)
        mask = torch.zeros(steps, dtype=torch.bool, device=device)
        mask[values.to(device)] = True
        return mask.expand(batch, steps)

    def transport(
        self, z: torch.Tensor, moving_other: torch.Tensor, spacing: Sequence[float] | None = None
    ) -> dict[str, torch.Tensor]:
        """Motion transport: one subject's motion matrix applied to another subject's ED frame.

        The decoder is conditioned on ``moving_other``, so the deformations adapt to the new anatomy without
        inter-subject registration. Same as :meth:`decode`.

        Args:
            z: motion matrix ``(B, d, T)`` of the source subject (e.g. from :meth:`encode`).
            moving_other: ED frame ``(B, 1, H, W)`` of the target subject.
            spacing: pixel spacing in mm for the spatial smoothing; defaults to the constructor's.

        Returns:
            the dict of :meth:`decode` for ``moving_other``.

        Raises:
            CineDataError: on inputs of the wrong shape.
        """
        return self.decode(z, moving_other, spacing)
