"""stedyn: population dynamics of activation-quantized networks trained with STEs."""

from ._activations import Activation as Activation
from ._model import Empirical as Empirical
from ._model import Gaussian as Gaussian
from ._model import Teacher as Teacher
from ._population import coarse_grad as coarse_grad
from ._population import population_grad as population_grad
from ._population import population_loss as population_loss
from ._ste import STE as STE

__version__ = "0.1.0"
