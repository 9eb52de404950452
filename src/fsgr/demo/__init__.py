"""The embedded demo: a tiny CLIP pretrained by our own code on synthetic shapes (`pretrain_clip`), the shipped demo
assets (`assets`), and the end-to-end demo pipeline (`run`)."""
