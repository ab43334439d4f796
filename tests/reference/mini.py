"""Reference numbers for the scaled-down networks of ``convatlas.models.mini``.

No paper publishes these networks, so every number is counted by hand below, layer by layer, at
``in_channels=1, num_classes=10`` and a 1x32x32 input. Conventions:

* a k x k convolution from C to C' channels has ``k*k*C*C'`` weights, plus ``C'`` biases when no
  batch norm follows it; a depthwise one (groups = C) has ``k*k*C``;
* batch norm has 2 parameters per channel (scale and shift; running statistics are buffers);
* a linear layer from n to m units has ``n*m + m``;
* MACs of a convolution are its weights times the output positions (H' x W'); of a linear layer,
  its weights. Pooling, normalisation and activations cost no MACs.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# alexnet_mini: conv widths 96-256-384-384-256 / 8 = 12-32-48-48-32, FC 4096 / 16 = 256.
# Sizes: conv1 7x7/2 pad 3: (32+6-7)//2+1 = 16; pool 3x3/2 pad 1: (16+2-3)//2+1 = 8; conv2 keeps 8;
# pool: 4; conv3-5 keep 4; pool: 2 -> 32 x 2 x 2 = 128 features.
#   conv1  7*7*1*12   = 588    + 12  = 600     MACs    588 * 16*16 = 150,528
#   conv2  5*5*12*32  = 9,600  + 32  = 9,632   MACs  9,600 * 8*8   = 614,400
#   conv3  3*3*32*48  = 13,824 + 48  = 13,872  MACs 13,824 * 4*4   = 221,184
#   conv4  3*3*48*48  = 20,736 + 48  = 20,784  MACs 20,736 * 4*4   = 331,776
#   conv5  3*3*48*32  = 13,824 + 32  = 13,856  MACs 13,824 * 4*4   = 221,184
#   fc6    128*256    = 32,768 + 256 = 33,024  MACs 32,768
#   fc7    256*256    = 65,536 + 256 = 65,792  MACs 65,536
#   fc8    256*10     = 2,560  + 10  = 2,570   MACs 2,560
# params: 600 + 9,632 + 13,872 + 20,784 + 13,856 + 33,024 + 65,792 + 2,570 = 160,130
# MACs:   150,528 + 614,400 + 221,184 + 331,776 + 221,184 + 32,768 + 65,536 + 2,560 = 1,639,936
ALEXNET_MINI = (160_130, 1_639_936)

# ---------------------------------------------------------------------------------------------
# vgg_mini (batch_norm=True): configuration A / 8 = [8, M, 16, M, 32, 32, M, 64, 64, M, 64, 64, M];
# every conv 3x3 pad 1 with a bias (torchvision's vgg*_bn keep it) + BN; sizes 32, 16, 8, 4, 2, then 1.
#   8  @32x32  3*3*1*8   = 72     + 8  + 16  = 96       MACs 72 * 1,024 = 73,728
#   16 @16x16  3*3*8*16  = 1,152  + 16 + 32  = 1,200    MACs 1,152 * 256 = 294,912
#   32 @8x8    3*3*16*32 = 4,608  + 32 + 64  = 4,704    MACs 4,608 * 64 = 294,912
#   32 @8x8    3*3*32*32 = 9,216  + 32 + 64  = 9,312    MACs 9,216 * 64 = 589,824
#   64 @4x4    3*3*32*64 = 18,432 + 64 + 128 = 18,624   MACs 18,432 * 16 = 294,912
#   64 @4x4    3*3*64*64 = 36,864 + 64 + 128 = 37,056   MACs 36,864 * 16 = 589,824
#   64 @2x2    same                         = 37,056    MACs 36,864 * 4 = 147,456
#   64 @2x2    same                         = 37,056    MACs 36,864 * 4 = 147,456
#   FC 64*256  = 16,384 + 256 = 16,640                  MACs 16,384
#   FC 256*256 = 65,536 + 256 = 65,792                  MACs 65,536
#   FC 256*10  = 2,560  + 10  = 2,570                   MACs 2,560
# params: 96 + 1,200 + 4,704 + 9,312 + 18,624 + 3 * 37,056 + 16,640 + 65,792 + 2,570
#       = 33,936 + 111,168 + 85,002 = 230,106
# MACs:   73,728 + 294,912 + 294,912 + 589,824 + 294,912 + 589,824 + 2 * 147,456 + 84,480
#       = 2,433,024 + 84,480 = 2,517,504
VGG_MINI = (230_106, 2_517_504)

# ---------------------------------------------------------------------------------------------
# resnet_mini: stem 3x3 1->8, then one basic block per stage, widths 8-16-32-64 at 32, 16, 8, 4.
# Convs have no bias (BN follows). A block: conv3x3 + BN, conv3x3 + BN, and a 1x1/2 projection + BN
# where the shape changes (stages 2-4).
#   stem    3*3*1*8 = 72 + BN 16 = 88                        MACs 72 * 1,024 = 73,728
#   layer1  2 x (3*3*8*8 = 576 + BN 16) = 1,184              MACs 2 * 576 * 1,024 = 1,179,648
#   layer2  3*3*8*16 = 1,152 + 32; 3*3*16*16 = 2,304 + 32;   MACs (1,152 + 2,304 + 128) * 256
#           1x1 8*16 = 128 + 32            -> 3,680                = 917,504
#   layer3  3*3*16*32 = 4,608 + 64; 3*3*32*32 = 9,216 + 64;  MACs (4,608 + 9,216 + 512) * 64
#           1x1 16*32 = 512 + 64           -> 14,528               = 917,504
#   layer4  3*3*32*64 = 18,432 + 128; 3*3*64*64 = 36,864 + 128;  MACs (18,432 + 36,864 + 2,048) * 16
#           1x1 32*64 = 2,048 + 128        -> 57,728                   = 917,504
#   fc      64*10 + 10 = 650                                 MACs 640
# params: 88 + 1,184 + 3,680 + 14,528 + 57,728 + 650 = 77,858
# MACs:   73,728 + 1,179,648 + 3 * 917,504 + 640 = 4,006,528
RESNET_MINI = (77_858, 4_006_528)

# ---------------------------------------------------------------------------------------------
# mobilenet_mini: width multiplier 1/4: conv 3x3 1->8 at stride 1, then 13 separable layers
# (out width, stride) = (16,1) (32,2) (32,1) (64,2) (64,1) (128,2) 5x(128,1) (256,2) (256,1);
# every conv without bias, followed by BN. Sizes: 32, 32, 16, 16, 8, 8, 4 (x6), 2, 2.
#   layer (in -> out @ size)   depthwise 9*in + BN 2*in;  pointwise in*out + BN 2*out   params   MACs
#   conv1  1 -> 8   @32        9*1*8 = 72 + 16                                          88       73,728
#   sep1   8 -> 16  @32        72 + 16;   128 + 32                                      248      (72 + 128) * 1,024 = 204,800
#   sep2   16 -> 32 @16        144 + 32;  512 + 64                                      752      (144 + 512) * 256 = 167,936
#   sep3   32 -> 32 @16        288 + 64;  1,024 + 64                                    1,440    (288 + 1,024) * 256 = 335,872
#   sep4   32 -> 64 @8         288 + 64;  2,048 + 128                                   2,528    (288 + 2,048) * 64 = 149,504
#   sep5   64 -> 64 @8         576 + 128; 4,096 + 128                                   4,928    (576 + 4,096) * 64 = 299,008
#   sep6   64 -> 128 @4        576 + 128; 8,192 + 256                                   9,152    (576 + 8,192) * 16 = 140,288
#   sep7-11 128 -> 128 @4      5 x (1,152 + 256; 16,384 + 256)                          5 x 18,048 = 90,240
#                                                                        MACs 5 x (1,152 + 16,384) * 16 = 1,402,880
#   sep12  128 -> 256 @2       1,152 + 256; 32,768 + 512                                34,688   (1,152 + 32,768) * 4 = 135,680
#   sep13  256 -> 256 @2       2,304 + 512; 65,536 + 512                                68,864   (2,304 + 65,536) * 4 = 271,360
#   fc     256*10 + 10                                                                  2,570    2,560
# params: 88 + 248 + 752 + 1,440 + 2,528 + 4,928 + 9,152 + 90,240 + 34,688 + 68,864 + 2,570 = 215,498
# MACs:   73,728 + 204,800 + 167,936 + 335,872 + 149,504 + 299,008 + 140,288 + 1,402,880
#         + 135,680 + 271,360 + 2,560 = 3,183,616
MOBILENET_MINI = (215_498, 3_183_616)

# ---------------------------------------------------------------------------------------------
# googlenet_mini: Table 1 widths // 8. Every conv without bias + BN (2 per channel).
# Stem: conv1 7x7/2 pad 3 (64/8 = 8) -> 16x16, conv2 1x1 (8), conv3 3x3 (192/8 = 24), all at 16x16.
# A module's columns (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj):
#   3a (in 24): 64, 96, 128, 16, 32, 32 // 8 = 8, 12, 16, 2, 4, 4 -> out 8+16+4+4 = 32    @16x16
#   then max pool 3x3/2, rounding up: ceil((16-3)/2)+1 = 8
#   4a (in 32): 192, 96, 208, 16, 48, 64 // 8 = 24, 12, 26, 2, 6, 8 -> out 24+26+6+8 = 64  @8x8
# Weights of a module: in*#1x1 + in*#3x3red + 9*#3x3red*#3x3 + in*#5x5red + 25*#5x5red*#5x5 + in*proj
#   conv1  7*7*1*8 = 392 + BN 16 = 408                             MACs 392 * 256 = 100,352
#   conv2  1*1*8*8 = 64 + BN 16 = 80                               MACs 64 * 256 = 16,384
#   conv3  3*3*8*24 = 1,728 + BN 48 = 1,776                        MACs 1,728 * 256 = 442,368
#   3a     24*8 + 24*12 + 9*12*16 + 24*2 + 25*2*4 + 24*4
#          = 192 + 288 + 1,728 + 48 + 200 + 96 = 2,552;
#          BN 2*(8+12+16+2+4+4) = 92  -> 2,644                     MACs 2,552 * 256 = 653,312
#   4a     32*24 + 32*12 + 9*12*26 + 32*2 + 25*2*6 + 32*8
#          = 768 + 384 + 2,808 + 64 + 300 + 256 = 4,580;
#          BN 2*(24+12+26+2+6+8) = 156 -> 4,736                    MACs 4,580 * 64 = 293,120
#   fc     64*10 + 10 = 650                                        MACs 640
# params: 408 + 80 + 1,776 + 2,644 + 4,736 + 650 = 10,294
# MACs:   100,352 + 16,384 + 442,368 + 653,312 + 293,120 + 640 = 1,506,176
GOOGLENET_MINI = (10_294, 1_506_176)

_SOURCE = "hand arithmetic in tests/reference/mini.py (1x32x32 input, 10 classes)"

# ---------------------------------------------------------------------------------------------
# efficientnet_mini at 1x14x14 (width 1, depth 1): convs without bias + BN (2 per channel); MBConv
# = [expand 1x1 (t > 1)] -> depthwise k x k -> SE (squeeze to in // 4, two biased 1x1) -> project 1x1.
#   layer                 params                                                   MACs (size)
#   stem 3x3 1->16        144 + 32 = 176                                           144 * 196 = 28,224 (14)
#   s0 MBConv1 k3 16->8   dw 144+32; SE 16*4+4 + 4*16+16 = 148; proj 128+16        dw 144*196 + SE 128 + proj 128*196
#                         = 468                                                    = 53,440 (14)
#   s1a MBConv6 k3/2 8->16  exp 384+96; dw 432+96; SE 48*2+2 + 2*48+48 = 242;      exp 384*196 + dw 432*49 + 192
#                         proj 768+32 = 2,050                                      + proj 768*49 = 134,256 (14 -> 7)
#   s1b 16->16 (hid 96)   exp 1,536+192; dw 864+192; SE 388+480 = 868;             75,264 + 42,336 + 768 + 75,264
#                         proj 1,536+32 = 5,220                                    = 193,632 (7)
#   s2a MBConv6 k5/2 16->24 exp 1,728; dw 2,400+192; SE 868; proj 2,304+48         75,264 + 38,400 + 768 + 36,864
#                         = 7,540                                                  = 151,296 (7 -> 4)
#   s2b 24->24 (hid 144)  exp 3,456+288; dw 3,600+288; SE 870+1,008 = 1,878;       55,296 + 57,600 + 1,728 + 55,296
#                         proj 3,456+48 = 13,014                                   = 169,920 (4)
#   s3 MBConv6 k3 24->40  exp 3,744; dw 1,296+288; SE 1,878; proj 5,760+80         55,296 + 20,736 + 1,728 + 92,160
#                         = 13,046                                                 = 169,920 (4)
#   head 1x1 40->128      5,120 + 256 = 5,376                                      5,120 * 16 = 81,920
#   fc 128->10            1,290                                                    1,280
# params: 176 + 468 + 2,050 + 5,220 + 7,540 + 13,014 + 13,046 + 5,376 + 1,290 = 48,180
# MACs:   28,224 + 53,440 + 134,256 + 193,632 + 151,296 + 169,920 + 169,920 + 81,920 + 1,280 = 983,888
EFFICIENTNET_MINI = (48_180, 983_888)

# ---------------------------------------------------------------------------------------------
# nas with its default genotype (three 3x3 layers of 24 filters in a chain) at 1x28x28: each layer
# conv (no bias) + BN, "same" padding, stride 1; global average pool; fc.
#   layer0 9*1*24 = 216 + BN 48 = 264        MACs 216 * 784 = 169,344
#   layer1 9*24*24 = 5,184 + BN 48 = 5,232   MACs 5,184 * 784 = 4,064,256
#   layer2 5,232                             MACs 4,064,256
#   fc 24*10 + 10 = 250                      MACs 240
# params: 264 + 5,232 + 5,232 + 250 = 10,978;  MACs: 169,344 + 2 * 4,064,256 + 240 = 8,298,096
NAS_DEFAULT = (10_978, 8_298_096)

PARAMS: dict[str, tuple[int, str]] = {
    "alexnet_mini": (ALEXNET_MINI[0], _SOURCE),
    "vgg_mini": (VGG_MINI[0], _SOURCE),
    "resnet_mini": (RESNET_MINI[0], _SOURCE),
    "mobilenet_mini": (MOBILENET_MINI[0], _SOURCE),
    "googlenet_mini": (GOOGLENET_MINI[0], _SOURCE),
    "efficientnet_mini": (EFFICIENTNET_MINI[0], _SOURCE),
    "nas": (NAS_DEFAULT[0], _SOURCE),
}

MACS: dict[str, tuple[float, float, str]] = {
    "alexnet_mini": (ALEXNET_MINI[1], 0.0, _SOURCE),
    "vgg_mini": (VGG_MINI[1], 0.0, _SOURCE),
    "resnet_mini": (RESNET_MINI[1], 0.0, _SOURCE),
    "mobilenet_mini": (MOBILENET_MINI[1], 0.0, _SOURCE),
    "googlenet_mini": (GOOGLENET_MINI[1], 0.0, _SOURCE),
    "efficientnet_mini": (EFFICIENTNET_MINI[1], 0.0, _SOURCE),
    "nas": (NAS_DEFAULT[1], 0.0, _SOURCE),
}
