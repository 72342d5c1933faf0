"""Pre-trained weights from the files users have, offline, mapped key by key onto the frame encoder.

Supported sources (``weights`` argument of ``build_model``):
- an OpenAI CLIP TorchScript file (``ViT-B-16.pt``), read with ``torch.jit.load``;
- an open_clip checkpoint: a full CLIP state dict (``visual.*`` keys), or ``{"state_dict": ...}``
  with ``module.`` prefixes, as ``.pt``/``.bin``/``.safetensors``;
- ``open_clip:MODEL/TAG`` (e.g. ``open_clip:ViT-B-16/openai``): an open_clip pretrained tag already
  in the local Hugging Face cache (or open_clip's URL cache), resolved without network access;
- a timm ViT ``.safetensors`` / ``.pth`` (timm key names);
- a released ST-Adapter checkpoint (OpenAI visual layout without ``visual.``, plus
  ``transformer.resblocks.{i}.adapter_pre_{attn,mlp}.{fc1,conv,fc2}.*`` and ``fc.*``).

The backbone must be covered exactly: a key the encoder lacks (other than the source's own
projection / classifier) or a key the file lacks is an error, as is any shape mismatch. Full-model
checkpoints must also cover exactly the method's modules and the head. A file of trainable weights
only (the reference code's ``save_model`` output, this suite's run checkpoint) is refused with what it
is: it belongs in ``--init``, on top of the image weights. ``check_weights`` makes these checks without
reading the tensors, so ``bench.run`` refuses a wrong file before any job starts.
"""
from __future__ import annotations

import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .backbone import BackboneConfig, FrameEncoder
from .base import VideoClassifier, WeightsError

OPEN_CLIP_SCHEME = "open_clip:"

SUPPORTED = ("an OpenAI CLIP TorchScript file (ViT-B-16.pt), an open_clip checkpoint (.pt/.bin/"
             ".safetensors with visual.* keys), 'open_clip:MODEL/TAG' for a tag in the local cache, "
             "a timm ViT .safetensors/.pth, or a released ST-Adapter checkpoint")

# OpenAI/open_clip visual-tower names -> timm VisionTransformer names (prefixes on dot boundaries).
_TOP_KEYS = (("conv1.weight", "patch_embed.proj.weight"), ("class_embedding", "cls_token"),
             ("positional_embedding", "pos_embed"), ("ln_pre", "norm_pre"), ("ln_post", "norm"))
_BLOCK_KEYS = (("ln_1", "norm1"), ("attn.in_proj_weight", "attn.qkv.weight"),
               ("attn.in_proj_bias", "attn.qkv.bias"), ("attn.out_proj", "attn.proj"),
               ("ln_2", "norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2"))
_OPENAI_BLOCK = re.compile(r"transformer\.resblocks\.(\d+)\.(.+)")
_TIMM_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
_RELEASED_ADAPTER = re.compile(r"transformer\.resblocks\.(\d+)\.adapter_(pre_attn|pre_mlp)\.(.+)")
_MODEL_SLOT = re.compile(r"encoder\.(pre_attn|pre_mlp)\.(\d+)\.(.+)")
# Keys a source may carry that the encoder has no use for: CLIP's projection, timm's classifier.
_IGNORED = {"openai": {"proj"}, "timm": {"head.weight", "head.bias"}}


def _rename(key: str, pairs: tuple[tuple[str, str], ...], reverse: bool) -> str | None:
    for src, dst in pairs:
        src, dst = (dst, src) if reverse else (src, dst)
        if key == src or key.startswith(src + "."):
            return dst + key[len(src):]
    return None


def openai_to_timm_key(key: str) -> str | None:
    """``transformer.resblocks.3.ln_1.weight`` -> ``blocks.3.norm1.weight``; None if not visual."""
    match = _OPENAI_BLOCK.fullmatch(key)
    if match:
        rest = _rename(match[2], _BLOCK_KEYS, reverse=False)
        return None if rest is None else f"blocks.{match[1]}.{rest}"
    return _rename(key, _TOP_KEYS, reverse=False)


def timm_to_openai_key(key: str) -> str | None:
    match = _TIMM_BLOCK.fullmatch(key)
    if match:
        rest = _rename(match[2], _BLOCK_KEYS, reverse=True)
        return None if rest is None else f"transformer.resblocks.{match[1]}.{rest}"
    return _rename(key, _TOP_KEYS, reverse=True)


def released_to_model_key(key: str) -> str | None:
    """Released ST-Adapter adapter/classifier keys -> VideoClassifier keys; None for others."""
    match = _RELEASED_ADAPTER.fullmatch(key)
    if match:
        return f"encoder.{match[2]}.{match[1]}.{match[3]}"
    return f"head.{key}" if key.startswith("fc.") else None


def model_to_released_key(key: str) -> str | None:
    match = _MODEL_SLOT.fullmatch(key)
    if match:
        return f"transformer.resblocks.{match[2]}.adapter_{match[1]}.{match[3]}"
    return key[len("head."):] if key.startswith("head.fc.") else None


def _to_timm_tensor(timm_key: str, value: torch.Tensor) -> torch.Tensor:
    """OpenAI stores the class / position embeddings without timm's leading batch dims."""
    if timm_key in ("cls_token", "pos_embed"):
        return value.reshape(1, -1, value.shape[-1])
    return value


def _to_openai_tensor(timm_key: str, value: torch.Tensor) -> torch.Tensor:
    if timm_key == "cls_token":
        return value.reshape(-1)
    if timm_key == "pos_embed":
        return value.flatten(0, 1)
    return value


@dataclass
class WeightSource:
    """A weights file read and renamed into this package's key names."""

    path: Path
    layout: str                                   # "openai" (incl. open_clip, released) | "timm"
    backbone: dict[str, torch.Tensor]             # FrameEncoder keys
    extras: dict[str, torch.Tensor]               # VideoClassifier keys (full-model checkpoints)
    file_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # where they differ
    unknown: list[str] = field(default_factory=list)         # file keys with no place in the model
    activation: str | None = None  # the MLP activation the weights were trained with, where the file tells

    def named(self, key: str) -> str:
        """A key as the file spells it (and as this package does, when they differ)."""
        file_key = key
        if self.layout == "openai":
            file_key = model_to_released_key(key) or timm_to_openai_key(key) or key
        return repr(file_key) if file_key == key else f"{file_key!r} (-> {key!r})"


# ----------------------------------------------------------------------------- locating the file

def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved from the environment at call time."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"),
                                                     "huggingface")
    return Path(home).expanduser() / "hub"


def _safetensors_first(filename: str) -> list[str]:
    """open_clip prefers a .safetensors twin of its .bin/.pth files."""
    if filename == "open_clip_pytorch_model.bin":
        return ["open_clip_model.safetensors", filename]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors", filename]
    return [filename]


def resolve_open_clip_tag(spec: str, backbone: BackboneConfig | None = None) -> Path:
    """``open_clip:ViT-B-16/openai`` -> the cached file; never downloads."""
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    model_name, _, tag = spec[len(OPEN_CLIP_SCHEME):].partition("/")
    cfg = open_clip.get_pretrained_cfg(model_name, tag) if model_name and tag else {}
    if not cfg:
        known = open_clip.list_pretrained_tags_by_model(model_name) if model_name else []
        raise WeightsError(f"weights {spec!r}: not an open_clip pretrained tag; expected "
                           f"'open_clip:MODEL/TAG'" + (f", tags of {model_name}: {known}" if known
                                                       else " (see open_clip.list_pretrained())"))
    model_cfg = open_clip.get_model_config(model_name) or {}
    trained_with = "quick_gelu" if cfg.get("quick_gelu") or model_cfg.get("quick_gelu") else "gelu"
    if backbone is not None and backbone.act != trained_with:
        raise WeightsError(f"weights {spec!r} were trained with {trained_with} but backbone "
                           f"{backbone.name!r} uses {backbone.act}; choose a backbone with "
                           f"act={trained_with!r} (e.g. clip_vit_b16 for OpenAI weights, "
                           "clip_vit_b16_gelu for LAION/DataComp ones)")
    searched = []
    if cfg.get("hf_hub"):
        repo_id, filename = os.path.split(cfg["hf_hub"])
        cache = hf_hub_cache_dir()
        for name in _safetensors_first(filename or "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache)
            if isinstance(found, str):
                return Path(found)
            searched.append(f"{repo_id}/{name} in {cache}")
    if cfg.get("url"):
        cached = Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
        if cached.is_file():
            return cached
        searched.append(str(cached))
    raise WeightsError(f"weights {spec!r}: not in the local cache (looked for {'; '.join(searched)}). "
                       f"Fetch it on a machine with internet (python -c \"import open_clip; "
                       f"open_clip.create_model('{model_name}', pretrained='{tag}')\") and copy the "
                       "cache over (HF_HOME / HF_HUB_CACHE), or pass the file's path instead")


def resolve_weights_path(spec: str | Path, backbone: BackboneConfig | None = None) -> Path:
    if str(spec).startswith(OPEN_CLIP_SCHEME):
        return resolve_open_clip_tag(str(spec), backbone)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist. Expected {SUPPORTED}; "
                           "pass its path (or use random_init=True only for tests and smoke runs)")
    return path


# ------------------------------------------------------------------------------- reading the file

def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.endswith("/constants.pkl") for name in archive.namelist())


def _unwrap(path: Path, obj: object) -> dict[str, torch.Tensor]:
    """Find the state dict inside training checkpoints and drop DDP's ``module.`` prefix."""
    if isinstance(obj, dict) and isinstance(obj.get("trainable"), dict):
        raise trainable_only(path, "a method's trainable weights, in this suite's run checkpoint (with its "
                             "optimizer and progress)", obj["trainable"])
    while isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in ("state_dict", "model", "module") if k in obj), None)
        if inner is None:
            raise WeightsError(f"weights file {str(path)!r}: no state dict found (top-level keys: "
                               f"{sorted(obj)[:10]}); expected {SUPPORTED}")
        obj = inner
    if not isinstance(obj, dict):
        raise WeightsError(f"weights file {str(path)!r} holds a {type(obj).__name__}, not a state "
                           f"dict; expected {SUPPORTED}")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def _numpy_arrays() -> list:
    """What a training checkpoint's RNG state needs beyond tensors (NumPy's generator state is an
    array): allowed so that such a file is recognised, never run; no other object can be unpickled."""
    import numpy as np
    return [np._core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.UInt32DType]


def read_state_dict(path: Path, mmap: bool = False) -> dict[str, torch.Tensor]:
    """The file's tensors by key; ``mmap`` maps a zip-format torch file instead of reading it."""
    try:
        if _is_torchscript(path):
            with warnings.catch_warnings():  # OpenAI ships TorchScript, deprecated or not
                warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=FutureWarning)
                return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        with torch.serialization.safe_globals(_numpy_arrays()):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
        return _unwrap(path, obj)
    except WeightsError:
        raise
    except Exception as err:  # unreadable, truncated or pickled with arbitrary objects
        raise WeightsError(f"weights file {str(path)!r} could not be read ({type(err).__name__}: "
                           f"{err}); expected {SUPPORTED}") from err


def _from_openai(path: Path, state: dict[str, torch.Tensor]) -> WeightSource:
    source = WeightSource(path, "openai", {}, {})
    for key, value in state.items():
        if (ours := released_to_model_key(key)) is not None:
            source.extras[ours] = value
        elif (ours := openai_to_timm_key(key)) is not None:
            source.backbone[ours] = _to_timm_tensor(ours, value)
            if source.backbone[ours].shape != value.shape:
                source.file_shapes[ours] = tuple(value.shape)
        elif key not in _IGNORED["openai"]:
            source.unknown.append(key)
    return source


def trainable_only(path: Path, what: str, state: dict) -> WeightsError:
    """The refusal of a file that holds no image tower, only what a method trains."""
    example = min(state, default="none")
    return WeightsError(f"weights file {str(path)!r} holds only {what}: {len(state)} tensors such as {example!r}, "
                        f"no image tower. It belongs in --init {path}, beside --weights <CLIP file> (the OpenAI "
                        "ViT-B-16.pt or open_clip checkpoint the method was trained on)")


def read_weights(spec: str | Path, backbone: BackboneConfig | None = None, mmap: bool = False) -> WeightSource:
    """Locate, read and rename a weights source (see the module docstring for the formats); ``mmap``
    maps the tensors of a zip-format torch file rather than reading them."""
    path = resolve_weights_path(spec, backbone)
    source = _read_source(path, mmap)
    source.activation = _activation_of(spec, path)
    return source


def _activation_of(spec: str | Path, path: Path) -> str | None:
    """Where the file tells: OpenAI's TorchScript files and open_clip's ``openai`` tags were trained
    with QuickGELU. State dicts do not say (open_clip's LAION weights use GELU, this suite's synthetic
    backbone QuickGELU under timm's key names); their backbone's ``act`` is trusted."""
    if _is_torchscript(path) or str(spec).startswith("open_clip:") and str(spec).endswith("/openai"):
        return "quick_gelu"
    return None


def _read_source(path: Path, mmap: bool = False) -> WeightSource:
    state = read_state_dict(path, mmap)
    if any(k.startswith("visual.") for k in state):  # a whole CLIP: keep the image tower
        return _from_openai(path, {k[len("visual."):]: v for k, v in state.items()
                                   if k.startswith("visual.")})
    if "conv1.weight" in state:
        return _from_openai(path, state)
    if "patch_embed.proj.weight" in state:
        kept = {k: v for k, v in state.items() if k not in _IGNORED["timm"]}
        return WeightSource(path, "timm", kept, {})
    if state and all(released_to_model_key(k) is not None for k in state):
        raise trainable_only(path, "ST-Adapter adapters and a classifier, in the reference code's save_model "
                             "layout", state)
    raise WeightsError(f"weights file {str(path)!r}: unrecognised key layout (first keys: "
                       f"{sorted(state)[:8]}); expected {SUPPORTED}")


# ------------------------------------------------------------------------------ loading into models

def _listing(items: list[str], shown: int = 8) -> str:
    more = f", ... ({len(items)} in all)" if len(items) > shown else ""
    return (", ".join(sorted(items)[:shown]) or "none") + more


def _check_shapes(source: WeightSource, given: dict[str, torch.Tensor],
                  expected: dict[str, torch.Tensor], what: str) -> None:
    wrong = sorted(k for k, v in given.items() if v.shape != expected[k].shape)
    if wrong:
        described = []
        for key in wrong:
            shape = tuple(given[key].shape)
            in_file = source.file_shapes.get(key, shape)
            here = f" [{shape} here]" if in_file != shape else ""
            described.append(f"{source.named(key)} has shape {in_file}{here} but {what} expects "
                             f"{tuple(expected[key].shape)}")
        raise WeightsError(f"weights file {str(source.path)!r}: {_listing(described, shown=4)}; the "
                           "file is for a different architecture or number of classes: pick the "
                           "matching backbone / method options")


def _check_keys(source: WeightSource, missing: list[str], unexpected: list[str], what: str,
                fix: str) -> None:
    if missing or unexpected:
        raise WeightsError(f"weights file {str(source.path)!r} does not match {what}. Missing from "
                           f"the file: {_listing(missing)}. Not used by the model: "
                           f"{_listing(unexpected)}. {fix}")


def check_weights(spec: str | Path, backbone: BackboneConfig) -> None:
    """What loading ``spec`` into ``backbone`` checks (format, layout, activation, keys, shapes), with
    the tensors mapped, not read, and the encoder built without memory: cheap enough to run before
    any job is submitted."""
    source = read_weights(spec, backbone, mmap=True)
    with torch.device("meta"):
        encoder = FrameEncoder(backbone)
    check_backbone(encoder, source)


def load_backbone(encoder: FrameEncoder, source: WeightSource) -> None:
    """Load the image weights; every backbone key must come from the file, and nothing else may."""
    check_backbone(encoder, source)
    encoder.load_state_dict(source.backbone, strict=False)


def check_backbone(encoder: FrameEncoder, source: WeightSource) -> None:
    """Raise unless ``source`` covers exactly ``encoder``'s backbone keys, at their shapes, trained with
    its activation."""
    expected = {k: v for k, v in encoder.state_dict().items() if k in encoder.backbone_state_keys()}
    what = f"backbone {encoder.config.name!r}"
    if source.activation is not None and source.activation != encoder.config.act:
        raise WeightsError(f"weights file {str(source.path)!r} was trained with {source.activation} but {what} "
                           f"uses {encoder.config.act}: the features would be wrong; use a backbone with "
                           f"act={source.activation!r} (OpenAI CLIP files: clip_vit_b16 / clip_vit_l14)")
    unexpected = [*map(repr, source.unknown),
                  *(source.named(k) for k in source.backbone if k not in expected)]
    missing = [source.named(k) for k in expected if k not in source.backbone]
    _check_keys(source, missing, unexpected, what,
                f"Expected the image tower of {what} ({SUPPORTED}); only CLIP's 'proj' and a timm "
                "'head' may be left over")
    _check_shapes(source, source.backbone, expected, what)


def load_extras(model: VideoClassifier, source: WeightSource) -> None:
    """Load a full-model checkpoint's method modules and head; they must match the model exactly."""
    expected = {k: v for k, v in model.state_dict().items() if k in model.added_state_keys()}
    what = f"method {model.method!r} ({model.method_config})"
    _check_keys(source, [source.named(k) for k in expected if k not in source.extras],
                [source.named(k) for k in source.extras if k not in expected], what,
                "A released ST-Adapter checkpoint loads into st_adapter built with the same "
                "width, kernel_size, positions and num_layers (e.g. preset 24x384 when it has "
                "adapter_pre_attn keys) and the same number of classes")
    _check_shapes(source, source.extras, expected, what)
    model.load_state_dict(source.extras, strict=False)


# ----------------------------------------------------------------------------------------- export

def to_openai_visual_state_dict(encoder: FrameEncoder) -> dict[str, torch.Tensor]:
    """The encoder's backbone in OpenAI visual layout (no ``visual.`` prefix, no ``proj``)."""
    state = encoder.state_dict()
    return {timm_to_openai_key(k): _to_openai_tensor(k, state[k])
            for k in sorted(encoder.backbone_state_keys())}


def export_st_adapter_checkpoint(model: VideoClassifier) -> dict[str, torch.Tensor]:
    """An ``st_adapter`` model as a state dict in the released ST-Adapter layout."""
    if model.method != "st_adapter":
        raise WeightsError(f"only st_adapter models have the released ST-Adapter layout, "
                           f"not {model.method!r}")
    added = sorted(model.added_state_keys())
    unnamed = [k for k in added if model_to_released_key(k) is None]
    if unnamed:
        raise WeightsError(f"the released ST-Adapter layout has no name for {_listing(unnamed)}: "
                           "only adapters in pre_attn / pre_mlp slots and the head can be exported")
    state = to_openai_visual_state_dict(model.encoder)
    model_state = model.state_dict()
    state.update({model_to_released_key(k): model_state[k] for k in added})
    return state


# ------------------------------------------------------------------------- trainable-only checkpoints

def read_trainable_checkpoint(path: Path | str, mmap: bool = False) -> tuple[dict[str, torch.Tensor], str]:
    """The trainable weights of a checkpoint in VideoClassifier keys, and which format it was.

    Accepted: this suite's run checkpoint (``{"trainable": {key: tensor}, ...}``); the reference
    ST-Adapter code's ``save_model`` file (``{"model": <state dict without the frozen parameters>,
    "optimizer", "lr_sched", "loss_scaler", "next_epoch"}``, released key names); and a bare state
    dict in either naming. These are training outputs, pickled with optimizer state, so they are
    read as full pickles: load only checkpoints you trust. ``mmap`` maps a zip-format file's tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"--init {str(path)!r}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap and zipfile.is_zipfile(path))
    except Exception as err:
        raise WeightsError(f"--init {str(path)!r} could not be read ({type(err).__name__}: {err})") from err
    if isinstance(obj, dict) and isinstance(obj.get("trainable"), dict):
        return dict(obj["trainable"]), "suite checkpoint"
    kind = "reference save_model checkpoint" if isinstance(obj, dict) and "model" in obj else "state dict"
    state = _unwrap(path, obj)
    renamed = {}
    for key, value in state.items():
        ours = released_to_model_key(key)
        renamed[ours if ours is not None else key] = value
    return renamed, kind


def load_init(model: VideoClassifier, path: Path | str) -> str:
    """Load a trainable-weights checkpoint on top of the pre-trained backbone (``--init``).

    It must cover the method's trainable set exactly (``check_init``). Returns the checkpoint's format.
    """
    state, kind = check_init(model, path)
    trainable = dict(model.trainable_named_parameters())
    with torch.no_grad():
        for key, value in state.items():
            trainable[key].copy_(value)
    return kind


def check_init(model: VideoClassifier, path: Path | str, mmap: bool = False) -> tuple[dict[str, torch.Tensor], str]:
    """The checkpoint's trainable weights and format, once checked to cover ``model``'s trainable set
    exactly: a key for a frozen parameter (the checkpoint is of another method or a full model), a
    key the model lacks, a trainable key the file lacks or another shape is an error naming the keys.
    ``model`` may live on the meta device (bench.run checks before any job starts)."""
    state, kind = read_trainable_checkpoint(path, mmap)
    trainable = dict(model.trainable_named_parameters())
    params = dict(model.named_parameters())
    frozen = sorted(k for k in state if k in params and k not in trainable)
    unknown = sorted(k for k in state if k not in params)
    missing = sorted(k for k in trainable if k not in state)
    if frozen or unknown or missing:
        raise WeightsError(
            f"--init {str(path)!r} ({kind}) does not cover the trainable set of {model.method!r} "
            f"({model.method_config}) exactly. Frozen parameters in the file: {_listing(frozen)}. Keys the "
            f"model lacks: {_listing(unknown)}. Trainable parameters the file lacks: {_listing(missing)}. "
            "Build the method with the options it was trained with (preset, width, positions, classes)")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(trainable[k].shape)} here" for k in sorted(state)
             if state[k].shape != trainable[k].shape]
    if wrong:
        raise WeightsError(f"--init {str(path)!r}: {_listing(wrong, shown=4)}; the checkpoint is for other "
                           "method options or another number of classes")
    return state, kind
