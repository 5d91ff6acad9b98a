"""stedyn: population dynamics of activation-quantized networks trained with STEs."""

from ._activations import Activation as Activation
from ._config import ConfigError as ConfigError
from ._config import SweepConfig as SweepConfig
from ._config import default_config as default_config
from ._config import load_config as load_config
from ._config import parse_config as parse_config
from ._dynamics import METRICS as METRICS
from ._dynamics import OUTCOMES as OUTCOMES
from ._dynamics import RunResult as RunResult
from ._dynamics import Tolerances as Tolerances
from ._dynamics import run as run
from ._empirical import sample_mixture as sample_mixture
from ._model import Empirical as Empirical
from ._model import Gaussian as Gaussian
from ._model import GaussianMixture as GaussianMixture
from ._model import Teacher as Teacher
from ._population import coarse_grad as coarse_grad
from ._population import population_grad as population_grad
from ._population import population_loss as population_loss
from ._ste import STE as STE
from ._sweep import load_results as load_results
from ._sweep import merge as merge
from ._sweep import sweep as sweep
from ._theory import PointDistance as PointDistance
from ._theory import StationaryPoint as StationaryPoint
from ._theory import classify_point as classify_point
from ._theory import coarse_true_correlation as coarse_true_correlation
from ._theory import crelu_C0 as crelu_C0
from ._theory import crelu_lambda as crelu_lambda
from ._theory import crelu_t0 as crelu_t0
from ._theory import crelu_w0 as crelu_w0
from ._theory import distance_to_point as distance_to_point
from ._theory import global_min as global_min
from ._theory import loss_hessian as loss_hessian
from ._theory import optimal_v as optimal_v
from ._theory import saddle_exists as saddle_exists
from ._theory import saddle_margin as saddle_margin
from ._theory import saddle_point as saddle_point
from ._theory import spurious_min as spurious_min
from ._theory import stationary_loss as stationary_loss
from ._theory import stationary_points as stationary_points
from ._theory import w_at_angle as w_at_angle

__version__ = "0.1.0"
