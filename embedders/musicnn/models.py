"""The musicnn model list: input constants, checkpoints, tag names and the registry variants.

Layers (all computed by one forward pass; an embedder exposes one as its vectors):
- MusiCNN `pool` (1506-d, default): the input of the original's penultimate dense layer:
  the 753-channel concat of front end (561) and mid end (3 x 64), max- and mean-pooled over
  the patch's time axis, interleaved per channel exactly as the original flattens it
  (`[max_0, mean_0, max_1, mean_1, ...]`), then the original's batch norm (moving stats).
- MusiCNN `penultimate` (200-d): the original extractor's `penultimate` feature.
- VGG `pool5` (128-d): the original `pool5` map is [2 time x 1 freq x 128 channels] per
  patch; the vector is its mean over the 2 x 1 positions (per channel).
- `taggram` (50-d): sigmoid tag probabilities; also returned as `Frames.tags` by every layer.
"""
from __future__ import annotations

from dataclasses import dataclass

FAMILY = "musicnn"
SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
PATCH_FRAMES = 187  # = librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
PATCH_S = PATCH_FRAMES * HOP_LENGTH / SAMPLE_RATE  # 2.992 s
MIN_TAIL_FRAMES = (PATCH_FRAMES + 1) // 2  # a partial last patch needs this much new audio
PRECISIONS = ("fp32", "bf16")

# From musicnn/configuration.py (copied so that converted weights need no musicnn package).
MTT_LABELS = ['guitar', 'classical', 'slow', 'techno', 'strings', 'drums', 'electronic', 'rock', 'fast', 'piano', 'ambient', 'beat', 'violin', 'vocal', 'synth', 'female', 'indian', 'opera', 'male', 'singing', 'vocals', 'no vocals', 'harpsichord', 'loud', 'quiet', 'flute', 'woman', 'male vocal', 'no vocal', 'pop', 'soft', 'sitar', 'solo', 'man', 'classic', 'choir', 'voice', 'new age', 'dance', 'male voice', 'female vocal', 'beats', 'harp', 'cello', 'no voice', 'weird', 'country', 'metal', 'female voice', 'choral']  # noqa: E501
MSD_LABELS = ['rock', 'pop', 'alternative', 'indie', 'electronic', 'female vocalists', 'dance', '00s', 'alternative rock', 'jazz', 'beautiful', 'metal', 'chillout', 'male vocalists', 'classic rock', 'soul', 'indie rock', 'Mellow', 'electronica', '80s', 'folk', '90s', 'chill', 'instrumental', 'punk', 'oldies', 'blues', 'hard rock', 'ambient', 'acoustic', 'experimental', 'female vocalist', 'guitar', 'Hip-Hop', '70s', 'party', 'country', 'easy listening', 'sexy', 'catchy', 'funk', 'electro', 'heavy metal', 'Progressive rock', '60s', 'rnb', 'indie pop', 'sad', 'House', 'happy']  # noqa: E501

CHECKPOINTS = ("MSD_musicnn", "MTT_musicnn", "MSD_vgg", "MTT_vgg")
LAYER_DIMS = {"pool": 1506, "penultimate": 200, "pool5": 128, "taggram": 50}
_DATASET_TEXT = {"MSD": "Million Song Dataset", "MTT": "MagnaTagATune"}


@dataclass(frozen=True)
class Variant:
    """One registry entry: a checkpoint and the layer its vectors come from."""

    name: str
    checkpoint: str  # e.g. "MSD_musicnn"
    layer: str  # "pool" | "penultimate" | "pool5" | "taggram"
    description: str
    precision: str = "fp32"  # "fp32" (exact port) | "bf16" (faster on CPU, see BF16_VARIANTS)

    @property
    def dim(self) -> int:
        return LAYER_DIMS[self.layer]

    @property
    def arch(self) -> str:
        return self.checkpoint.split("_", 1)[1]

    @property
    def tag_names(self) -> list[str]:
        return list(MSD_LABELS if self.checkpoint.startswith("MSD") else MTT_LABELS)


def _variants() -> list[Variant]:
    out = []
    for ds in ("msd", "mtt"):
        ckpt = ds.upper()
        data = _DATASET_TEXT[ckpt]
        out += [
            Variant(f"musicnn-{ds}", f"{ckpt}_musicnn", "pool",
                    f"MusiCNN ({data}): max+mean pooled front/mid-end features, 1506-d per 3 s"),
            Variant(f"musicnn-{ds}-penultimate", f"{ckpt}_musicnn", "penultimate",
                    f"MusiCNN ({data}): penultimate dense layer, 200-d per 3 s"),
            Variant(f"musicnn-{ds}-taggram", f"{ckpt}_musicnn", "taggram",
                    f"MusiCNN ({data}): 50 tag probabilities per 3 s"),
            Variant(f"vgg-{ds}", f"{ckpt}_vgg", "pool5",
                    f"VGG-like CNN ({data}): pool5 features averaged per 3 s patch, 128-d"),
            Variant(f"vgg-{ds}-taggram", f"{ckpt}_vgg", "taggram",
                    f"VGG-like CNN ({data}): 50 tag probabilities per 3 s"),
        ]
    return out


VARIANTS: dict[str, Variant] = {v.name: v for v in _variants()}
# Opt-in bfloat16 inference ("<name>-bf16"; loadable by name, not listed): about 1.6x the
# CPU throughput of the exact port where the CPU has AVX512-BF16 or AMX, at a small accuracy
# cost (MSD checkpoints on music: taggram within ~7e-3, cosine similarity to the exact
# vectors >= 0.9996 per patch and >= 0.9998 per clip). A separate name, so that its vectors
# never share a collection with the exact ones.
BF16_VARIANTS: dict[str, Variant] = {
    f"{v.name}-bf16": Variant(f"{v.name}-bf16", v.checkpoint, v.layer,
                              f"{v.description} (bfloat16 inference: faster, approximate)", "bf16")
    for v in VARIANTS.values()}
