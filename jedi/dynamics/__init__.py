"""The tanh rate RNN's dynamics, shared by the teachers, the student and the analyses.

- ``rate_rnn``: the recurrent weights (low-rank product, dense, shared base), the update rule
  x' = (1 - alpha) x + alpha (W tanh x + b + u) and its unroll;
- ``bptt``: the student's training unroll with a hand-written backward pass;
- ``maps``: the noise-free update as a map over a batch of contexts, with analytic Jacobians;
- ``fixed_points``: the batched fixed-point finder; ``lyapunov``: the Lyapunov spectrum.

Nothing here plots or reads runs; ``jedi_rnn.analysis`` builds on it.
"""
