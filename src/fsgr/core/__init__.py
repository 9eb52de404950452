"""The core that training and serving share, and that imports neither: building a model from a config or a
checkpoint (`build`), the checkpoint file (`checkpoint`), packaged assets (`assets`), device choice and autocast
(`device`), torchrun's process group (`distributed`: the trainer's ranks and bulk captioning's). Below it: `config`,
`models`, `data`, `metrics`."""
