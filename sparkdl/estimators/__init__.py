"""Spark ML Estimators and Models wrapping torch architectures.

Each estimator ``X`` fits an ``XModel`` (a ``TorchModel``); any saved model
loads with ``TorchModel.load(path)``.
"""

from sparkdl.estimators.autoencoder import Autoencoder, AutoencoderModel
from sparkdl.estimators.base import TorchEstimator, TorchModel
from sparkdl.estimators.cnn import CNNClassifier, CNNClassifierModel, CNNRegressor, CNNRegressorModel
from sparkdl.estimators.mlp import MLPClassifier, MLPClassifierModel, MLPRegressor, MLPRegressorModel
from sparkdl.estimators.persistence import allow_pickle
from sparkdl.estimators.recurrent import RNNClassifier, RNNClassifierModel, RNNRegressor, RNNRegressorModel
from sparkdl.estimators.seq2seq import Seq2Seq, Seq2SeqModel
from sparkdl.estimators.tcn import TCNClassifier, TCNClassifierModel, TCNRegressor, TCNRegressorModel
from sparkdl.estimators.transformer import TransformerClassifier, TransformerClassifierModel, TransformerRegressor, TransformerRegressorModel
from sparkdl.estimators.wavenet import WaveNet, WaveNetModel

__all__ = [
    "Autoencoder", "AutoencoderModel",
    "CNNClassifier", "CNNClassifierModel", "CNNRegressor", "CNNRegressorModel",
    "MLPClassifier", "MLPClassifierModel", "MLPRegressor", "MLPRegressorModel",
    "RNNClassifier", "RNNClassifierModel", "RNNRegressor", "RNNRegressorModel",
    "Seq2Seq", "Seq2SeqModel",
    "TCNClassifier", "TCNClassifierModel", "TCNRegressor", "TCNRegressorModel",
    "TorchEstimator", "TorchModel",
    "TransformerClassifier", "TransformerClassifierModel", "TransformerRegressor", "TransformerRegressorModel",
    "WaveNet", "WaveNetModel", "allow_pickle",
]
