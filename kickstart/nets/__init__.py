"""Agent networks: torso -> core -> policy and baseline heads.

``build_agent(cfg, spec)`` builds the network a run trains (``build_net(cfg.net, spec)`` a plain one); the parts (torsos, cores, heads) are importable
for methods that assemble their own agents (e.g. Mix & Match sharing a torso between components).
"""

from kickstart.nets.agent import AgentNet, AgentOutput, build_agent, build_net
from kickstart.nets.cores import FFCore, LSTMCore, make_core
from kickstart.nets.heads import BaselineHead, CategoricalHead, FactorisedJointHead, make_policy_head
from kickstart.nets.torsos import TORSO_NAMES, fitting_torsos, make_torso, resolve_torso

__all__ = [
    "AgentNet", "AgentOutput", "build_agent", "build_net",
    "FFCore", "LSTMCore", "make_core",
    "BaselineHead", "CategoricalHead", "FactorisedJointHead", "make_policy_head",
    "TORSO_NAMES", "fitting_torsos", "make_torso", "resolve_torso",
]
