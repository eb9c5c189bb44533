"""Baselines for JEDI (spec jedi.md §8i), each a LightningModule selectable as ``model=jedi/<name>``
on the same data, splits and metrics as JEDI:

- ``vae.VAE``: MLP encoder of the whole trial -> Gaussian latent -> MLP decoder of the trajectory;
- ``rnn_vae.RNNVAE``: bidirectional GRU encoder -> Gaussian initial condition of an input-free GRU
  generator -> linear readout (LFADS without controller);
- ``shared_rnn.SharedRNN``: the student RNN with one learned full-rank J for all trials, no context;
- ``per_condition_rnn.PerConditionRNN``: an independent learned J per condition label;
- ``context_input_rnn.ContextInputRNN``: one shared J, the auto-decoder embedding fed as a constant
  input W_c c.
"""
