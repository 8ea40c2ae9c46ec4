"""Layers and losses shared by several systems: GAN losses and regularisers, conditional norms,
residual blocks, discriminators, perceptual loss, DiffAugment, EMA, and the character transformer."""

from imaginate.nn.blocks import (
    ResidualDiscriminatorBlock,
    ResidualGeneratorBlock,
    maybe_spectral,
    snconv2d,
    snembedding,
    snlinear,
)
from imaginate.nn.diffaugment import DIFFAUGMENT_OPS, DiffAugment, diff_augment
from imaginate.nn.discriminators import (
    AuxiliaryClassifierHead,
    MultiScaleOutput,
    MultiScalePatchDiscriminator,
    PatchDiscriminator,
    ProjectionDiscriminator,
)
from imaginate.nn.ema import ModelEMA
from imaginate.nn.flow_warp import backward_warp
from imaginate.nn.gan_losses import (
    GAN_LOSSES,
    check_gan_loss,
    d_loss,
    d_loss_terms,
    feature_matching_loss,
    g_loss,
)
from imaginate.nn.norms import SPADE, AdaIN, ConditionalBatchNorm2d, adain, channel_mean_std
from imaginate.nn.perceptual import PerceptualLoss, VGG19Features, find_vgg19_weights
from imaginate.nn.regularizers import gradient_penalty, is_due, lazy_penalty, r1_penalty, r2_penalty
from imaginate.nn.spade import MultiSPADE, SPADEGenerator, segmentation_one_hot

__all__ = [
    "DIFFAUGMENT_OPS", "GAN_LOSSES", "SPADE", "AdaIN", "AuxiliaryClassifierHead", "ConditionalBatchNorm2d",
    "DiffAugment", "ModelEMA", "MultiScaleOutput", "MultiScalePatchDiscriminator", "PatchDiscriminator",
    "PerceptualLoss", "ProjectionDiscriminator", "ResidualDiscriminatorBlock", "ResidualGeneratorBlock",
    "VGG19Features", "adain", "channel_mean_std", "check_gan_loss", "d_loss", "d_loss_terms", "diff_augment",
    "feature_matching_loss", "find_vgg19_weights", "g_loss", "gradient_penalty", "is_due", "lazy_penalty",
    "maybe_spectral", "r1_penalty", "r2_penalty", "snconv2d", "snembedding", "snlinear",
    "backward_warp",
    "MultiSPADE", "SPADEGenerator", "segmentation_one_hot",
]
