"""Each paper's grid of runs (option files in ``options/`` and ``options/demo/``), which run is the
baseline of which, the metrics whose direction the paper claims, and the paper's own numbers for
those rows (typed in from the papers, with their table and test set)."""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Run:
    name: str  # the option file's stem; the demo twin is options/demo/<name>.yml, run 'demo_<name>'
    label: str
    baseline: str = None  # the run this one is compared with
    paper: dict = field(default_factory=dict)  # metric -> the paper's value for this row
    paper_baseline: dict = None  # the paper's baseline row when it is not the baseline run's (another table)


@dataclass(frozen=True)
class PaperGrid:
    key: str
    title: str
    source: str  # where the paper's numbers come from
    claims: dict  # metric -> 'higher' | 'lower': what the paper says the method improves
    runs: tuple


def sploss():
    table3 = {1: (29.00, 0.8133, 6.1075), 3: (28.63, 0.8128, 5.9905), 4: (28.47, 0.8121, 5.9531),
              6: (28.19, 0.8104, 5.9058), 8: (27.97, 0.8086, 5.8582), 10: (27.79, 0.8071, 5.8179)}
    runs = [Run('edsr_l1', 'EDSR, L1', paper={'psnr': 32.48, 'ssim': 0.8988, 'niqe': 7.1441}),
            Run('edsr_sploss', 'EDSR-SP (alpha 2)', 'edsr_l1', {'psnr': 32.11, 'ssim': 0.8982, 'niqe': 6.8699}),
            Run('nlsn_x4_l1', 'NLSN, L1', paper={'psnr': 32.70, 'ssim': 0.9000, 'niqe': 7.0472}),
            Run('nlsn_x4_sploss', 'NLSN-SP (alpha 2)', 'nlsn_x4_l1', {'psnr': 32.35, 'ssim': 0.8999, 'niqe': 6.9121})]
    table3_l1 = {'psnr': 29.14, 'ssim': 0.8113, 'niqe': 6.2195}  # Table 3's alpha = 0 (L1) column
    runs += [Run(f'nlsn_x4_sploss_alpha{a}', f'NLSN-SP, alpha {a}', 'nlsn_x4_l1',
                 {'psnr': p, 'ssim': s, 'niqe': n}, table3_l1) for a, (p, s, n) in table3.items()]
    return PaperGrid('sploss', 'SPLoss (Wang et al.), EDSR and NLSN x4',
                     'Table 1, Set5 (EDSR, EDSR-SP, NLSN, NLSN-SP); Table 3, mean of Set5/Set14/B100/Urban100 (NLSN '
                     'alpha sweep)', {'niqe': 'lower', 'ssim': 'higher'}, tuple(runs))


def sploss_gopro():
    """Table 2: MPRNet deblurring on GoPro. The paper's MPRNet column is the authors' released model (32.66 dB,
    MPRNet's own GoPro result), trained with its Charbonnier + edge loss on every stage: our baseline run."""
    runs = (Run('mprnet_gopro_l1', 'MPRNet, its own loss (Charbonnier + edge)',
                paper={'psnr': 32.66, 'ssim': 0.9362, 'lpips': 0.0908, 'niqe': 5.2189}),
            Run('mprnet_gopro_sploss', 'MPRNet-SP (alpha 2)', 'mprnet_gopro_l1',
                {'psnr': 32.44, 'ssim': 0.9371, 'lpips': 0.0790, 'niqe': 4.7728}))
    return PaperGrid('sploss_gopro', 'SPLoss (Wang et al.), MPRNet deblurring on GoPro',
                     'Table 2, the GoPro test set (1111 pairs); PSNR and SSIM on RGB',
                     {'ssim': 'higher', 'lpips': 'lower', 'niqe': 'lower'}, runs)


def tlw():
    table1_x4_set5 = {'edsr': (30.6984, 30.4268, 30.6716, 30.5246), 'rcan': (30.0164, 30.4734, 30.6185, 30.2342),
                      'vdsr': (30.7434, 30.6993, 30.6993, 30.7785)}
    runs = []
    for arch, (l1, mse, l1_tlw, mse_tlw) in table1_x4_set5.items():
        name = f'tlw_{arch}_x4'
        runs += [Run(f'{name}_l1', f'{arch.upper()} x4, L1', paper={'psnr': l1}),
                 Run(f'{name}_mse', f'{arch.upper()} x4, MSE', paper={'psnr': mse}),
                 Run(f'{name}_l1_tlw', f'{arch.upper()} x4, L1+TLW', f'{name}_l1', {'psnr': l1_tlw}),
                 Run(f'{name}_mse_tlw', f'{arch.upper()} x4, MSE+TLW', f'{name}_mse', {'psnr': mse_tlw})]
    runs += [Run('udl_edsr_x4_l1', 'EDSR x4 (DIV2K), L1'),
             Run('udl_edsr_x4_l1_tlw', 'EDSR x4 (DIV2K), L1+TLW', 'udl_edsr_x4_l1'),
             Run('udl_edsr_x4_esu', 'EDSR x4 (DIV2K), UDL stage 1 (ESU)'),
             Run('udl_edsr_x4_l1_udl', 'EDSR x4 (DIV2K), L1-UDL', 'udl_edsr_x4_l1')]
    table2_set5 = {'l1': (32.2203, 0.2059), 'l1_tlw': (32.2084, 0.2053), 'l1_udl': (32.0091, 0.2084)}
    paper = {loss: {'psnr': psnr, 'lpips': lpips} for loss, (psnr, lpips) in table2_set5.items()}
    runs += [Run('tlw_hat_x4_l1', 'HAT x4 (DIV2K), L1', paper=paper['l1']),
             Run('tlw_hat_x4_l1_tlw', 'HAT x4 (DIV2K), L1-TLW', 'tlw_hat_x4_l1', paper['l1_tlw']),
             Run('tlw_hat_x4_esu', 'HAT x4 (DIV2K), UDL stage 1 (ESU)'),
             Run('tlw_hat_x4_l1_udl', 'HAT x4 (DIV2K), L1-UDL', 'tlw_hat_x4_l1', paper['l1_udl'])]
    return PaperGrid('tlw', 'Trainable loss weights (TLW), x4',
                     'Table I, x4, Set5 PSNR; Table II (section IV-C, HAT x4 on DIV2K), Set5 PSNR and LPIPS (the '
                     'EDSR x4 DIV2K runs have none: the paper trains HAT there)', {'psnr': 'higher', 'lpips': 'lower'},
                     tuple(runs))


def fgd():
    runs = []
    table = {2: (37.76, None, 38.36), 3: (33.92, None, 33.48), 4: (31.65, 32.15, 32.23)}
    for scale, (baseline, cs, fd) in table.items():
        name = f'fgd_lapsrn_x{scale}'
        runs += [Run(f'{name}_baseline', f'LapSRN x{scale}', paper={'psnr': baseline}),
                 Run(f'{name}_cs', f'LapSRN x{scale} + CS loss', f'{name}_baseline', {'psnr': cs} if cs else {}),
                 Run(f'{name}_fgd', f'LapSRN x{scale} + FD loss', f'{name}_baseline', {'psnr': fd})]
    runs += [Run('fgd_edsr_x4_l1', 'EDSR x4, L1'), Run('fgd_edsr_x4_fgd', 'EDSR x4 + FD loss', 'fgd_edsr_x4_l1')]
    return PaperGrid('fgd', 'Fine-grained dynamic loss (FGD)', 'Table 1 (x4) and Table 2 (x2, x3), Set5 PSNR',
                     {'psnr': 'higher'}, tuple(runs))


def asymmetric():
    """Only Table 4 (DnCNN, sigma 25) is legible in our copy: Table 2 (SRCNN) has no numbers and Table 3
    (EDSR) lost its row and column order; of Table 5 (DPHSIR's denoiser, GRUNet) only the caption and header
    survive. Typed in: the mean of Table 4's nine legible rows (of the paper's ten test images of its own),
    RMSE times 255 for our 0-255 scale."""
    table4 = {'l1': (29.87, 0.8607, 15.47), 'mse': (29.97, 0.8639, 15.31),
              'asy_l1': (30.00, 0.8625, 15.26), 'asy_mse': (30.11, 0.8647, 15.05)}
    runs = []
    for prefix, label in (('srcnn_x3', 'SRCNN x3'), ('edsr_x4', 'EDSR x4'), ('dncnn_s25', 'DnCNN sigma 25'),
                          ('dphsir_s25', 'DPHSIR GRUNet sigma 25')):
        paper = {loss: dict(zip(('psnr', 'ssim', 'rmse'), values)) if prefix == 'dncnn_s25' else {}
                 for loss, values in table4.items()}
        runs += [Run(f'{prefix}_l1', f'{label}, MAE', paper=paper['l1']),
                 Run(f'{prefix}_mse', f'{label}, MSE', paper=paper['mse']),
                 Run(f'{prefix}_asy_l1', f'{label}, Asy_MAE', f'{prefix}_l1', paper['asy_l1']),
                 Run(f'{prefix}_asy_mse', f'{label}, Asy_MSE', f'{prefix}_mse', paper['asy_mse'])]
    return PaperGrid('asymmetric', 'Asymmetric grey-value loss',
                     'Table 4 (DnCNN), mean of its nine legible rows over the paper\'s own test images, RMSE x 255; '
                     'Tables 2 and 3 (SRCNN, EDSR) are not legible in our copy, Table 5 (DPHSIR) has no numbers in it',
                     {'psnr': 'higher', 'ssim': 'higher', 'rmse': 'lower'},
                     tuple(runs))


def zhao():
    """Table 1 (the paper's own 40 MIT-Adobe FiveK test images): PSNR, SSIM, MS-SSIM, GMSD, FSIM per loss."""
    table1 = {  # task -> loss -> (psnr, ssim, ms_ssim, gmsd, fsim)
        'demosaick': {'l2': (33.18, 0.9346, 0.9636, 0.0490, 0.9716), 'l1': (34.42, 0.9535, 0.9745, 0.0434, 0.9775),
                      'ssim5': (33.15, 0.9500, 0.9721, 0.0452, 0.9764),
                      'ssim9': (32.98, 0.9495, 0.9718, 0.0467, 0.9759),
                      'msssim': (33.29, 0.9536, 0.9741, 0.0437, 0.9782), 'mix': (34.61, 0.9564, 0.9757, 0.0401, 0.9795)},
        'jpeg_q25': {'l2': (32.73, 0.9427, 0.9692, 0.0427, 0.9803), 'l1': (32.96, 0.9467, 0.9714, 0.0413, 0.9825),
                     'msssim': (27.66, 0.9364, 0.9674, 0.0468, 0.9789), 'mix': (33.25, 0.9501, 0.9734, 0.0402, 0.9830)},
        'srcnn_x3': {'l2': (30.66, 0.9274, 0.9816, 0.0298, 0.9600), 'l1': (31.26, 0.9322, 0.9826, 0.0259, 0.9671),
                     'msssim': (30.11, 0.9290, 0.9817, 0.0316, 0.9601), 'mix': (31.34, 0.9334, 0.9829, 0.0255, 0.9680)},
    }
    labels = {'demosaick': 'demosaicking + denoising', 'jpeg_q25': 'JPEG q25', 'srcnn_x3': 'SR x3'}
    runs = []
    for task, losses in table1.items():
        for loss, values in losses.items():
            paper = dict(zip(('psnr', 'ssim', 'ms_ssim', 'gmsd', 'fsim'), values))
            runs.append(Run(f'zhao_{task}_{loss}', f'{labels[task]}, {loss}', None if loss == 'l2' else f'zhao_{task}_l2',
                            paper))
    return PaperGrid('zhao', 'Zhao et al., loss functions for restoration', 'Table 1, the paper\'s 40 MIT-Adobe '
                     'FiveK test images (we validate on the demo or Set14 images)',
                     {'psnr': 'higher', 'ssim': 'higher', 'ms_ssim': 'higher', 'gmsd': 'lower'}, tuple(runs))


GRIDS = {grid.key: grid for grid in (sploss(), sploss_gopro(), asymmetric(), zhao(), tlw(), fgd())}
