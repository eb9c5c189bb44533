"""JEDI: jointly embedded inference of neural dynamics.

A per-trial context embedding is mapped by a hypernetwork to the recurrent weights J(c) of an
autonomous rate RNN fitted to recorded population activity.
"""
__version__ = "0.1.0"
