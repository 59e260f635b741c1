"""Trainable embedders: models and training loops (torch). The registry entries live in `embedders.trained`.

* `autoencoder`: conditioned convolutional autoencoder with a 3-D latent (PCA-3 fallback);
* `selfsup`: compact CNN trained with SimCLR on a library's audio, no labels;
* `finetune`: a pretrained musicnn-family network (VGG, MusiCNN) fine-tuned with SimCLR on a library;
* `supcon`: supervised-contrastive projection head on a frozen embedder's vectors;
* `common`: log-mel front end, model folders and checkpoints, the epoch loop.

Importing this package does not import torch; its modules do.
"""
