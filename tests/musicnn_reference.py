"""Run the ORIGINAL musicnn TensorFlow graphs on given inputs (helper for tests/test_musicnn.py).

Run in a subprocess: the original code disables eager execution for the whole process.

    python tests/musicnn_reference.py OUT.npz --patches IN.npy [--wav CLIP.wav] MODEL [MODEL ...]

For each MODEL (e.g. MSD_musicnn, MTT_vgg) writes `MODEL/<tensor>` arrays to OUT.npz:
the sigmoid taggram and features of the `--patches` input ([n, 187, 96] float32 log-mel):
MusiCNN: penultimate, mean_pool, max_pool, dense_input (what the penultimate dense layer
reads); VGG: pool5 ([n, 2, 1, 128]). With `--wav`, also `wav/patches` (the original
`musicnn.extractor.batch_data` patches of that file, non-overlapping 187-frame patches)
and `MODEL/wav_taggram`, `MODEL/wav_penultimate` (MusiCNN) for them.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before TensorFlow is imported
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

N_FRAMES = 187


def run(out: str, patches_path: str, models: list[str], wav: str | None) -> None:
    import numpy as np
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    import musicnn
    from musicnn import configuration as config
    from musicnn import models as mn_models

    pkg = os.path.dirname(musicnn.__file__)
    patches = np.load(patches_path).astype(np.float32)
    results: dict[str, np.ndarray] = {}
    wav_batch = None
    if wav is not None:
        from musicnn.extractor import batch_data

        wav_batch, _ = batch_data(wav, N_FRAMES, N_FRAMES)
        results["wav/patches"] = wav_batch.astype(np.float32)

    for model in models:
        tf.compat.v1.reset_default_graph()
        with tf.name_scope("model"):  # as musicnn.extractor.extractor builds it
            x = tf.compat.v1.placeholder(tf.float32, [None, N_FRAMES, config.N_MELS])
            is_training = tf.compat.v1.placeholder(tf.bool)
            outs = mn_models.define_model(x, is_training, model, 50)
            taggram = tf.nn.sigmoid(outs[0])
        graph = tf.compat.v1.get_default_graph()
        fetch = {"taggram": taggram}
        if "vgg" in model:
            fetch["pool5"] = outs[5]
        else:
            fetch.update(mean_pool=outs[6], max_pool=outs[7], penultimate=outs[8])
            matmul = [op for op in graph.get_operations()
                      if op.type == "MatMul" and op.name.endswith("/dense/MatMul")]
            assert len(matmul) == 1, [op.name for op in matmul]
            fetch["dense_input"] = matmul[0].inputs[0]
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            # no bare except here: a failed restore must fail loudly
            tf.compat.v1.train.Saver().restore(sess, os.path.join(pkg, model) + "/")
            got = sess.run(fetch, feed_dict={x: patches, is_training: False})
            for k, v in got.items():
                results[f"{model}/{k}"] = np.asarray(v, np.float32)
            if wav_batch is not None:
                wav_fetch = {"wav_taggram": taggram}
                if "vgg" not in model:
                    wav_fetch["wav_penultimate"] = fetch["penultimate"]
                got = sess.run(wav_fetch, feed_dict={x: wav_batch, is_training: False})
                for k, v in got.items():
                    results[f"{model}/{k}"] = np.asarray(v, np.float32)
    np.savez(out, **results)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--patches", required=True)
    ap.add_argument("--wav")
    ap.add_argument("models", nargs="+")
    args = ap.parse_args(argv)
    run(args.out, args.patches, args.models, args.wav)
    return 0


if __name__ == "__main__":
    sys.exit(main())
