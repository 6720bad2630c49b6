"""ViZDoom scenarios (Kempka et al. 2016, Wydmuch et al. 2019) as a :class:`BatchedEnv`.

Env ids ``vizdoom:<scenario>``: ViZDoom's single-player scenarios (:data:`SCENARIOS`, the ``.cfg``
files shipped with the ``vizdoom`` package, Freedoom assets), and ``vizdoom:deathmatch_bots``, a
deathmatch against ZDoom's built-in bots on the map the ViZDoom competition's examples use. Scenario
names are case-insensitive and may drop their underscores (``vizdoom:DefendTheCenter``).

**Observations.** First-person frames rendered off-screen (no window, no sound, no depth, label or
automap buffers) in grayscale (``env.doom.color``: RGB, channels first) at the smallest ViZDoom
resolution that covers ``env.doom.obs_size`` (160x120 for the default 84x84), area-resized to
``obs_size`` with two precomputed weight matrices (no image library); a size that is itself a ViZDoom
resolution is rendered as is. ``env.frame_stack`` frames are stacked oldest first into a
``(frame_stack * channels, H, W)`` uint8 observation (``obs_scale`` 1/255); at the start of an
episode the stack holds zeros except for the newest frame, as on Atari. The default (4, 84, 84) is
Atari's shape, so the Atari torsos (``nature``, ``impala_shallow``, ``impala_deep``) fit it.

**Actions** (``env.doom.actions``). Every game has the same eight buttons, :data:`BUTTONS`; an agent
action is a set of them, named by its buttons joined with ``+`` (``MOVE_FORWARD+TURN_LEFT+ATTACK``;
none pressed is ``NOOP``). Actions are declared by meaning and by factors (``EnvSpec.action_factors``
over :data:`FACTOR_SIZES`), so that teachers and Mix & Match components map onto each other by name
and a factorised policy head fits any of the sets:

* ``small``: NOOP and each of the scenario's own buttons alone (basic: ``NOOP, MOVE_LEFT,
  MOVE_RIGHT, ATTACK``), in the order of its ``.cfg``, as ViZDoom's own Discrete spaces; buttons
  outside :data:`BUTTONS` (weapon selection, delta buttons, USE) are left out, and SPEED, a
  modifier that does nothing alone, too. ``env.doom.buttons`` replaces the scenario's set. A suite
  takes the union of its tasks' sets, in :data:`BUTTONS` order.
* ``large``: DeepMind Lab's kind of product space, :data:`FACTORS` move (none / forward / backward)
  x strafe (none / left / right) x turn (none / left / right) x attack x speed = 108 actions,
  indexed in :func:`itertools.product` order (:func:`large_index`). The scenario's small set is
  ``minimal_action_meanings``: Mix & Match's ``action_set: minimal`` is the small -> large curriculum.

Turning uses the binary TURN_LEFT / TURN_RIGHT buttons: a fixed turn rate per tic, doubled by SPEED.

**Episodes.** An action is repeated for ``env.doom.frame_skip`` tics (one ``make_action``), its
rewards summed; frames are counted as the papers count them, agent steps x ``frame_skip``. The
scenario's own reward (its ACS script and ``.cfg``: living reward, death penalty) is reported as is;
in ``deathmatch_bots`` the reward is the change of the frag count (kills minus suicides). Death and a
scenario's goal (an exit, the vest) end an episode as *terminated*. A scenario's ``episode_timeout``
is a *truncation*: we switch ViZDoom's own timeout off and end the episode ourselves at the first step
boundary at or past it (at most ``frame_skip - 1`` tics late), while the game still has a state, so
the final observation is kept in ``final_obs`` (ViZDoom has no state once it ends an episode).
``env.max_episode_frames`` (tics) and ``env.max_episode_steps`` truncate too. In ``deathmatch_bots``
the player respawns at once after a death, as in any deathmatch: a death is not the end of the
episode, the 4200-tic (2-minute) match is. ``env.sticky_actions`` (default 0) repeats the previous
agent action with that probability.

**Seeding.** Env ``i`` passes ``env_seeds(seed, N)[i]`` to ``DoomGame.set_seed`` (monster and bot
behaviour, spawn spots) and to its sticky-action generator: the same seed and actions give the same
frames and rewards, episode after episode.

Every game is a ViZDoom engine process of its own (``make_action`` waits for it, so an actor still
uses one core). The engines' ``.ini`` files go to a temporary folder that ``close`` removes, not to
the working directory.
"""

from __future__ import annotations

import difflib
import itertools
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from kickstart.config import DoomConfig, EnvConfig
from kickstart.envs.batched import BatchedEnv, StepResult, env_seeds
from kickstart.envs.names import name_key
from kickstart.errors import UserError
from kickstart.specs import EnvSpec

PREFIX = "vizdoom:"
NOOP = "NOOP"

FACTORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("move", ("", "MOVE_FORWARD", "MOVE_BACKWARD")),
    ("strafe", ("", "MOVE_LEFT", "MOVE_RIGHT")),
    ("turn", ("", "TURN_LEFT", "TURN_RIGHT")),
    ("attack", ("", "ATTACK")),
    ("speed", ("", "SPEED")),
)
"""The factors of an action and the button each of their values presses ("" none)."""
FACTOR_SIZES = tuple(len(values) for _, values in FACTORS)
BUTTONS = tuple(b for _, values in FACTORS for b in values if b)
"""The buttons every game has, in the order of the button vectors sent to ViZDoom."""
MODIFIERS = ("SPEED",)
"""Buttons that do nothing alone; small action sets leave them out."""

_FACTOR_OF = {b: (j, v) for j, (_, values) in enumerate(FACTORS) for v, b in enumerate(values) if b}


@dataclass(frozen=True)
class Scenario:
    cfg: str
    """``.cfg`` file in ViZDoom's scenarios folder: map, rewards, buttons, timeout."""
    doom_map: str = ""
    """Map to play instead of the ``.cfg``'s ("" keeps it)."""
    timeout: int | None = None
    """Episode timeout in tics instead of the ``.cfg``'s (None keeps it; 0 none)."""
    bots: int = 0
    """Built-in bots added at the start of every episode (a multiplayer deathmatch hosted alone)."""


SCENARIOS: dict[str, Scenario] = {
    "basic": Scenario("basic.cfg"),                          # kill one monster by the far wall
    "simpler_basic": Scenario("simpler_basic.cfg"),          # a variant of basic on its own map
    "rocket_basic": Scenario("rocket_basic.cfg"),            # basic with rockets, no autoaim
    "deadly_corridor": Scenario("deadly_corridor.cfg"),      # reach the vest past six shooting monsters
    "deathmatch": Scenario("deathmatch.cfg"),                # an arena where monsters keep spawning
    # A deathmatch against ZDoom's bots on the map of ViZDoom's bot examples (cig.wad; map02 has weapons
    # and items to pick up), 2 minutes a match.
    "deathmatch_bots": Scenario("cig.cfg", doom_map="map02", timeout=4200, bots=7),
    "defend_the_center": Scenario("defend_the_center.cfg"),  # turn and shoot, 26 rounds, monsters all round
    "defend_the_line": Scenario("defend_the_line.cfg"),      # shoot the monsters across the room
    "health_gathering": Scenario("health_gathering.cfg"),    # survive on acid by picking up medkits
    "health_gathering_supreme": Scenario("health_gathering_supreme.cfg"),   # the same on a harder map
    "my_way_home": Scenario("my_way_home.cfg"),              # find the vest in a maze, random start
    "predict_position": Scenario("predict_position.cfg"),    # hit a walking monster with one rocket
    # Dodge fireballs, moving left/right. The shipped take_cover.cfg has no timeout; OpenAI Gym's
    # DoomTakeCover-v0 (ppaquette/gym-doom) cut episodes at 2100 tics (one minute), which bounds the return.
    "take_cover": Scenario("take_cover.cfg", timeout=2100),
}

BOT_ARGS = ("-host 1 -deathmatch +sv_forcerespawn 1 +sv_noautoaim 1 +sv_respawnprotect 1 +sv_spawnfarthest 1 "
            "+sv_nocrouch 1 +viz_respawn_delay 0")
"""A deathmatch hosted for the agent alone, with the settings of ViZDoom's bot and competition examples."""


_BY_KEY = {name_key(s): s for s in SCENARIOS}


def canonical_task(scenario: str) -> str:
    """``"DefendTheCenter"`` / ``"defend_the_center"`` -> ``"vizdoom:defend_the_center"``."""
    name = _BY_KEY.get(name_key(scenario))
    if name is None:
        close = difflib.get_close_matches(name_key(scenario), list(_BY_KEY), n=2)
        hint = f" (did you mean {', '.join(PREFIX + _BY_KEY[c] for c in close)}?)" if close else ""
        raise UserError(f"unknown ViZDoom scenario {scenario!r}{hint}; valid: "
                        + ", ".join(PREFIX + s for s in SCENARIOS))
    return PREFIX + name


def scenario_name(task: str) -> str:
    """``"vizdoom:basic"`` (or ``"basic"``) -> ``"basic"``."""
    return canonical_task(task[len(PREFIX):] if task.lower().startswith(PREFIX) else task)[len(PREFIX):]


# -- actions ---------------------------------------------------------------------------------------

def factors_of(meaning: str) -> tuple[int, ...]:
    """Factor values of an action named by its buttons: ``"MOVE_FORWARD+ATTACK"`` -> (1, 0, 0, 1, 0)."""
    values = [0] * len(FACTORS)
    name = str(meaning).strip().upper()
    if name == NOOP:
        return tuple(values)
    seen: dict[int, str] = {}
    for part in name.split("+"):
        b = part.strip()
        if b not in _FACTOR_OF:
            raise UserError(f"unknown ViZDoom button {b!r} in action {meaning!r}; valid buttons: "
                            f"{', '.join(BUTTONS)} (joined with +), or {NOOP}")
        j, v = _FACTOR_OF[b]
        if j in seen:
            raise UserError(f"action {meaning!r} presses {seen[j]} and {b}, two values of the "
                            f"{FACTORS[j][0]} factor; an action presses at most one of "
                            f"{', '.join(x for x in FACTORS[j][1] if x)}")
        seen[j] = b
        values[j] = v
    return tuple(values)


def meaning_of(factors: Sequence[int]) -> str:
    """The name of the action with these factor values (:func:`factors_of`'s inverse)."""
    pressed = [FACTORS[j][1][v] for j, v in enumerate(factors) if v]
    return "+".join(pressed) if pressed else NOOP


def buttons_of(factors: Sequence[int]) -> list[int]:
    """The 0/1 button vector (over :data:`BUTTONS`) ViZDoom gets for these factor values."""
    pressed = {FACTORS[j][1][v] for j, v in enumerate(factors) if v}
    return [int(b in pressed) for b in BUTTONS]


def large_index(factors: Sequence[int]) -> int:
    """Index of the action with these factor values in the large set (mixed radix, move first)."""
    index = 0
    for v, n in zip(factors, FACTOR_SIZES):
        index = index * n + int(v)
    return index


LARGE_MEANINGS = tuple(meaning_of(f) for f in itertools.product(*(range(n) for n in FACTOR_SIZES)))
"""The 108 actions of ``env.doom.actions=large``, action ``i`` being ``meaning_of(product(...)[i])``."""


def _vizdoom():
    try:
        import vizdoom
    except ImportError:
        raise UserError("ViZDoom is not installed; pip install vizdoom") from None
    return vizdoom


@cache
def scenario_buttons(scenario: str) -> tuple[str, ...]:
    """The buttons of a scenario's own small set: its ``.cfg``'s buttons that are in :data:`BUTTONS`,
    modifiers left out, in the ``.cfg``'s order (reads the file; starts no game)."""
    vzd = _vizdoom()
    game = vzd.DoomGame()
    game.load_config(os.path.join(vzd.scenarios_path, SCENARIOS[scenario].cfg))
    names = [b.name for b in game.get_available_buttons()]
    return tuple(b for b in names if b in _FACTOR_OF and b not in MODIFIERS)


def _small_set(scenarios: Sequence[str], dcfg: DoomConfig) -> tuple[str, ...]:
    if dcfg.buttons:
        for b in dcfg.buttons:
            if b.strip().upper() not in _FACTOR_OF:
                raise UserError(f"env.doom.buttons has an unknown ViZDoom button {b!r}; valid: {', '.join(BUTTONS)}")
        wanted = list(dict.fromkeys(b.strip().upper() for b in dcfg.buttons))
        return (NOOP, *wanted)
    sets = [scenario_buttons(s) for s in scenarios]
    if len(set(sets)) == 1:
        return (NOOP, *sets[0])
    union = set().union(*sets)
    return (NOOP, *(b for b in BUTTONS if b in union))


def action_meanings(scenarios: Sequence[str], dcfg: DoomConfig) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """(the action set, its minimal set for Mix & Match) of these scenarios under ``dcfg``."""
    small = _small_set(scenarios, dcfg)
    minimal = small if len(set(scenarios)) == 1 or dcfg.buttons else None
    if dcfg.actions == "large":
        return LARGE_MEANINGS, minimal
    return small, small


# -- observations ----------------------------------------------------------------------------------

@cache
def _resolutions() -> dict[tuple[int, int], str]:
    """``{(height, width): "RES_WxH"}`` of every ViZDoom screen resolution."""
    out = {}
    for name in _vizdoom().ScreenResolution.__members__:
        w, h = (int(v) for v in name[len("RES_"):].split("X"))
        out[(h, w)] = name
    return out


def render_resolution(obs_size: Sequence[int]) -> tuple[str, int, int]:
    """(ViZDoom resolution name, height, width) to render ``obs_size = [H, W]`` from: the size itself
    when it is a ViZDoom resolution, else the smallest one that covers it."""
    h, w = int(obs_size[0]), int(obs_size[1])
    res = _resolutions()
    if (h, w) in res:
        return res[(h, w)], h, w
    fits = [(rh * rw, rh, rw) for rh, rw in res if rh >= h and rw >= w]
    if not fits:
        biggest = max(res, key=lambda r: r[0] * r[1])
        raise UserError(f"env.doom.obs_size={[h, w]} is larger than every ViZDoom resolution; at most "
                        f"{list(biggest)} ([height, width])")
    _, rh, rw = min(fits)
    return res[(rh, rw)], rh, rw


def area_matrix(src: int, dst: int) -> np.ndarray:
    """``[dst, src]`` float32 weights of an area (box) resize along one axis: output ``i`` is the mean
    of the source interval ``[i, i + 1) * src / dst``, cells cut by its ends weighted by their overlap
    (what OpenCV's INTER_AREA computes). Rows sum to 1."""
    scale = src / dst
    m = np.zeros((dst, src), np.float64)
    for i in range(dst):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(math.floor(lo), min(src, math.ceil(hi))):
            m[i, j] = min(hi, j + 1) - max(lo, j)
    return (m / m.sum(1, keepdims=True)).astype(np.float32)


def _taps(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ``[dst, src]`` weight matrix as taps: ``(index, weight)``, each ``[T, dst]``, with
    ``out[i] = sum_t weight[t, i] * x[index[t, i]]`` (T = most source cells one output reads)."""
    nz = [np.flatnonzero(row) for row in m]
    taps = max(len(j) for j in nz)
    index = np.zeros((taps, m.shape[0]), np.intp)
    weight = np.zeros((taps, m.shape[0]), np.float32)
    for i, j in enumerate(nz):
        index[:len(j), i] = j
        weight[:len(j), i] = m[i, j]
    return index, weight


class _Resize:
    """``[k, C, h, w]`` uint8 frames -> ``[k, C, H, W]`` uint8, area-resized (or as they are).

    Each axis is a sum of a few weighted gathers (:func:`_taps` of :func:`area_matrix`) rather than a
    matrix product: numpy's BLAS starts its own threads, which on the actors' shared cores made the
    product 13x slower than on one thread; the gathers are single-threaded and as fast."""

    def __init__(self, src: tuple[int, int], dst: tuple[int, int]):
        self.same = tuple(src) == tuple(dst)
        self.rows = _taps(area_matrix(src[0], dst[0]))
        self.cols = _taps(area_matrix(src[1], dst[1]))

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if self.same:
            return frames
        x = frames.astype(np.float32)
        (ci, cw), (ri, rw) = self.cols, self.rows
        x = sum(x[..., ci[t]] * cw[t] for t in range(len(ci)))                     # [k, C, h, W]
        x = sum(x[..., ri[t], :] * rw[t][:, None] for t in range(len(ri)))         # [k, C, H, W]
        return (x + 0.5).astype(np.uint8)   # a convex combination of uint8 stays in [0, 255]


def doom_spec(tasks: Sequence[str], cfg: EnvConfig) -> EnvSpec:
    """Spec of one scenario or of a suite (one action set for all its tasks, see the module doc)."""
    dcfg = cfg.doom
    scenarios = [scenario_name(t) for t in tasks]
    meanings, minimal = action_meanings(scenarios, dcfg)
    render_resolution(dcfg.obs_size)   # a size no resolution covers is an error now, not in the actors
    channels = 3 if dcfg.color else 1
    return EnvSpec(
        obs_shape=(cfg.frame_stack * channels, *dcfg.obs_size), obs_dtype="uint8", obs_scale=1.0 / 255.0,
        action_nvec=(len(meanings),), multi_discrete=False, action_meanings=meanings,
        frames_per_step=dcfg.frame_skip, task_names=tuple(PREFIX + s for s in scenarios),
        action_factors=tuple(factors_of(m) for m in meanings), factor_sizes=FACTOR_SIZES,
        minimal_action_meanings=minimal,
    )


# -- games -----------------------------------------------------------------------------------------

class ScenarioGame:
    """One ViZDoom game of a scenario: its engine, the timeout we apply, frags and sticky actions.

    Public so that scripts can read the engine (``game``), e.g. the bots' frags in ``deathmatch_bots``.
    """

    def __init__(self, scenario: str, dcfg: DoomConfig, seed: int, ini_path: str, max_tics: int):
        vzd = _vizdoom()
        sc = SCENARIOS[scenario]
        g = vzd.DoomGame()
        g.load_config(os.path.join(vzd.scenarios_path, sc.cfg))
        if sc.doom_map:
            g.set_doom_map(sc.doom_map)
        g.set_doom_config_path(ini_path)
        g.set_window_visible(False)
        g.set_sound_enabled(False)
        g.set_audio_buffer_enabled(False)
        g.set_depth_buffer_enabled(False)
        g.set_labels_buffer_enabled(False)
        g.set_automap_buffer_enabled(False)
        g.set_objects_info_enabled(False)
        g.set_sectors_info_enabled(False)
        g.set_screen_format(vzd.ScreenFormat.CRCGCB if dcfg.color else vzd.ScreenFormat.GRAY8)
        g.set_screen_resolution(getattr(vzd.ScreenResolution, render_resolution(dcfg.obs_size)[0]))
        g.set_available_buttons([getattr(vzd.Button, b) for b in BUTTONS])
        g.set_mode(vzd.Mode.PLAYER)     # synchronous: the engine waits for every action
        timeout = sc.timeout if sc.timeout is not None else g.get_episode_timeout()
        g.set_episode_timeout(0)        # applied by us, as a truncation (see the module doc)
        self.max_tics = min(t for t in (timeout, max_tics) if t > 0) if max(timeout, max_tics) > 0 else 0
        self.bots = sc.bots
        self._frags = vzd.GameVariable.FRAGCOUNT
        if self.bots:
            g.add_game_args(BOT_ARGS)
            g.set_available_game_variables([self._frags])
        g.set_seed(int(seed) & 0xFFFFFFFF)
        g.init()
        self.game = g
        self.rng = np.random.default_rng(seed)   # sticky actions
        self.last_action = 0
        self._fresh = True      # init() has started the first episode
        self._begin()

    def _begin(self) -> None:
        g = self.game
        if self.bots:
            g.send_game_command("removebots")
            for _ in range(self.bots):
                g.send_game_command("addbot")
            self.frags = g.get_game_variable(self._frags)
        self.t0 = g.get_episode_time()
        self.last_action = 0

    def new_episode(self) -> None:
        if self._fresh:
            self._fresh = False
            return
        self.game.new_episode()
        self._begin()

    def act(self, buttons: list[int], tics: int) -> tuple[float, bool, bool]:
        """(reward, terminated, timed out) of pressing ``buttons`` for ``tics`` tics."""
        self._fresh = False
        g = self.game
        r = g.make_action(buttons, tics)
        if self.bots:
            if g.is_player_dead():
                g.respawn_player()
            frags = g.get_game_variable(self._frags)
            r += frags - self.frags
            self.frags = frags
        if g.is_episode_finished():
            return r, True, False
        return r, False, self.max_tics > 0 and g.get_episode_time() - self.t0 >= self.max_tics

    def frame(self) -> np.ndarray:
        """The current screen, ``[C, h, w]`` uint8 (the episode must not have ended)."""
        buf = self.game.get_state().screen_buffer
        return buf[None] if buf.ndim == 2 else buf

    def close(self) -> None:
        self.game.close()


class DoomBatch(BatchedEnv):
    """``N`` ViZDoom games stepped in a loop; env ``i`` is seeded with ``env_seeds(seed, N)[i]``."""

    def __init__(self, spec: EnvSpec, cfg: EnvConfig, task_ids: Sequence[int], seed: int):
        super().__init__(spec, task_ids)
        dcfg = cfg.doom
        self._skip = dcfg.frame_skip
        self._sticky = 0.0 if cfg.sticky_actions is None else float(cfg.sticky_actions)
        self._max_steps = cfg.max_episode_steps
        self._channels = 3 if dcfg.color else 1
        _, h, w = render_resolution(dcfg.obs_size)
        self._resize = _Resize((h, w), tuple(dcfg.obs_size))
        self._buttons = [buttons_of(f) for f in spec.action_factors]
        self._obs = np.zeros((self.num_envs, *spec.obs_shape), np.uint8)
        self._tmp = tempfile.mkdtemp(prefix="kickstart-vizdoom-")
        self._games: list[ScenarioGame] = []
        try:
            for i, (t, s) in enumerate(zip(self.task_ids.tolist(), env_seeds(seed, self.num_envs))):
                self._games.append(ScenarioGame(scenario_name(spec.task_names[t]), dcfg, s,
                                            os.path.join(self._tmp, f"{i}.ini"), cfg.max_episode_frames))
        except BaseException:
            self._close()
            raise

    @property
    def games(self) -> list[ScenarioGame]:
        return self._games

    def _start(self, idx: Sequence[int]) -> None:
        """Start the next episode of envs ``idx``: a stack of zeros and their first frame."""
        if not idx:
            return
        for i in idx:
            self._games[i].new_episode()
        first = self._resize(np.stack([self._games[i].frame() for i in idx]))
        self._obs[idx] = 0
        self._obs[idx, -self._channels:] = first

    def _reset(self) -> np.ndarray:
        self._start(list(range(self.num_envs)))
        return self._obs.copy()

    def _step(self, actions: np.ndarray) -> StepResult:
        n, games = self.num_envs, self._games
        reward = np.empty(n, np.float32)
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        for i, a in enumerate(actions.tolist()):
            g = games[i]
            if self._sticky and g.rng.random() < self._sticky:
                a = g.last_action
            g.last_action = a
            reward[i], terminated[i], truncated[i] = g.act(self._buttons[a], self._skip)
        self._tracker.add(reward)
        if self._max_steps is not None:
            truncated |= (self._tracker.length >= self._max_steps) & ~terminated
        live = np.flatnonzero(~terminated).tolist()   # the games that still have a screen
        c = self._channels
        self._obs[:, :-c] = self._obs[:, c:]
        if live:
            self._obs[live, -c:] = self._resize(np.stack([games[i].frame() for i in live]))
        final_obs = self._obs.copy() if truncated.any() else None   # rows of truncated envs: final
        done = np.flatnonzero(terminated | truncated).tolist()
        episodes = [self._tracker.finish(i) for i in done]
        self._start(done)
        return StepResult(self._obs.copy(), reward, terminated, truncated, episodes, final_obs)

    def _close(self) -> None:
        for g in self._games:
            try:
                g.close()
            except Exception:  # noqa: BLE001 - an engine already gone; close the others
                pass
        self._games = []
        shutil.rmtree(self._tmp, ignore_errors=True)
