"""Teaching texts shown next to each view: what it shows and what to look for.

Kept in one place so they can be reviewed for accuracy against the code they describe
(dimsum/flow/paths.py, dimsum/models/dimsum.py, dimsum/models/wavelets.py, scan_orders.py).
"""

INTRO = """\
# DiMSUM explorer
**DiMSUM** (Diffusion Mamba, NeurIPS 2024) denoises images with blocks that look at the picture
two ways at once: a **spatial branch** (a Mamba state-space model reading the image tokens in a
scan order) and a **frequency branch** (a Mamba reading Haar-wavelet coefficients), fused by
**cross-attention**. Generate a few images, then open the tabs below to see each part at work.
"""

EMOJI_NOTE = """\
**The default model** is a small DiMSUM we trained ourselves in pixel space on *Emoji-32*: about
7,560 emoji (Google Noto, Apache-2.0, and Twitter Twemoji, CC-BY 4.0, from the
`emoji-datasource` package) at 32×32 RGB, labelled with 9 categories such as *Smileys & Emotion*
or *Food & Drink*. It has the same token geometry as the released DiM-L/2 models (2×2 patches →
a 16×16 token grid), so every view shows what the big models do, on images a CPU can make in
seconds. Expect emoji-like pictures in the chosen category, not copies of real emoji.
"""

GENERATE_HELP = """\
**How sampling works.** Generation starts from Gaussian noise at time t = 0 and follows the
model's velocity v(x, t, class) to t = 1 (data), along DiMSUM's GVP path
x_t = sin(πt/2)·x₁ + cos(πt/2)·x₀. **Steps**: N steps split t into N intervals, recorded as steps 0 (noise) to N (the image) for
every sampler (dopri5: N intervals between its N + 1 recorded points, the library's
`num_steps = N + 1`; the adaptive solver chooses its own steps in between). **Heun** uses 2 model evaluations per step
(accurate with few steps), **Euler** 1, **dopri5** is the official adaptive solver.
**Step schedule** (Heun, Euler): *uniform* spaces the steps evenly in t; *Karras (EDM)* spaces
them evenly in the noise level's ρ = 7 scale, so they crowd near t = 0 and t = 1, where the guided
velocity turns fastest: at 20 Heun steps the result lies ~4.5x closer to the exact ODE solution
(see the trajectory tab's t values). Both reach the same image quality on the embedded model.
**Guidance scale** s mixes conditional and unconditional predictions, v = v_uncond + s·(v_cond −
v_uncond): 1 = no guidance, larger = more typical of the class, 0 = ignore the class. Each image
gets its own seed (seed, seed+1, …), so an image depends only on its seed and the settings.
**Noise temperature** T scales the starting noise, x₀ ~ N(0, T²·I) (GANs call it truncation):
below 1 the samples stay nearer the typical images of the class, cleaner but less varied; 1 is
the noise the model was trained on. Each model opens at its recommended value (the official
models 1; the embedded model a little below 1, see its model card).
"""

TRAJECTORY_HELP = """\
**What you see.** At every recorded step the sampler holds a noisy state **x_t** (top row). From
x_t and the velocity the model predicts the clean image
**x̂₁ = sin(πt/2)·x_t + (2/π)·cos(πt/2)·v** (bottom row). **Look for:** the prediction settles on
coarse layout and colour early (small t), while fine detail appears late; x_t only becomes clean
at t = 1. In the curves, the distance of x̂₁ to the final sample falls to 0 at t = 1; the velocity
size shows how hard the model is pushing at each time.
"""

WAVELETS_HELP = """\
**What you see.** A 2-level Haar **packet** transform, the one DiMSUM's frequency branch uses.
Level 1 splits the image into 4 subbands of half size: the **approximation** (low-pass both ways)
and three details — **detail along columns** (changes going down a column: horizontal edges),
**detail along rows** (changes along a row: vertical edges) and **detail along both**
(diagonal). Level 2 splits *all four* again, giving 16 subbands of quarter size, labelled
*level-1 band / level-2 band* (approx, cols, rows, diag). Detail tiles show magnitude (dark = 0).
**Look for:** most energy sits in the approximation (note the log scale); early x_t is white
noise, so its energy is spread evenly over all 16 bands, and the spectrum tilts toward low
frequencies as t → 1. The frequency-branch view shows the wavelet coefficients of a block's
*features* — what that branch's Mamba actually scans.
"""

SCANS_HELP = """\
**What you see.** A Mamba reads tokens as a 1-D sequence, so each branch needs an order. The
**spatial branch** scans the token grid row by row or column by column, forward or reversed,
changing every layer in a 4-layer cycle so that information flows in all directions. The
**frequency branch** scans wavelet tokens window by window: the grid is cut into 4×4 windows and
each window is read completely before the next (row-first or column-first). Its grid is *not* a
picture: the token layout spreads the 16 subband coefficients of each quarter-resolution
location over one 4×4 block of tokens. **Look for:** consecutive numbers are neighbours in the
sequence; the attention diamonds show where the single shared attention block (global mixing,
the same weights each time) runs.
"""

BRANCHES_HELP = """\
**What you see.** Inside one block at one sampling step: the **spatial branch** output, the
**frequency branch** output (after the inverse wavelet transform, back on the token grid), the
**cross-attention fusion** (each branch queries the other) and the **block output**. Each map
is the token grid; a token's colour is the **strength of its features** (the length of
its channel vector), on one colour scale for all four maps, so a brighter map means a branch
that writes more. *Feature similarity* instead colours tokens by their three main feature
directions (principal components): same colour = similar features. The chart compares how each
output's energy is spread over the Haar packet subbands (log scale, in % of its total). **Look for:** how the two branches differ (the frequency
branch mixes information within wavelet windows, the spatial one along its scan lines), and how
the maps sharpen from early to late steps.
"""

ARCHITECTURE_HELP = """\
**One DiMSUM block.** The residual stream is normalised (RMSNorm) and its channels are split in
half. One half goes to the **spatial branch** (Mamba over this layer's scan order → *Scan orders*
tab). The other half is transformed by a 2-level Haar packet into 16 subbands, laid out as
tokens and read by the **frequency branch** Mamba in window order, then transformed back
(→ *Wavelets* tab). **Cross-attention** fuses them (each half queries the other), the result is
added to the normalised input, and a gated MLP follows; time and class enter every block
through adaptive scaling (adaLN). After every 4th block one **shared attention** block (the same
weights each time) mixes all tokens globally. The final layer outputs the velocity, which the
sampler integrates (→ *Trajectory* tab); the branch outputs are in the *Branches* tab.
"""

EVIDENCE_HELP = """\
**Ablation evidence.** Variants of the emoji model trained the same way with different blocks
(DiMSUM's spatial + frequency blocks, spatial-only Mamba blocks, attention-only blocks) at a
matched parameter count. FD-emoji is a Fréchet distance in the feature space of a small emoji
classifier trained by us (lower is better; it is not the Inception FID); precision / recall use
k = 3 nearest neighbours in the same space; accuracy is that classifier's accuracy on generated
images of the requested class (shows that guidance works).
"""

EVIDENCE_MISSING = """\
*No ablation results are available in this build.* When `assets/ablation/curves.json` exists,
its training curves appear here; when `checkpoints/ablation/<variant>/` folders exist, you can
generate the same seed and class with every variant side by side.
"""

STOPPED_PREVIOUS = (
    "**Stopped at {where}.** That run was discarded; showing the previous run (its images "
    "and every tab below)."
)
STOPPING = "Stopping after the current step…"
STOPPED_NOTHING = (
    "**Stopped at {where}.** That run was discarded; there is no finished run to show yet."
)

SHARE_HELP = """\
Reproduce a run: copy the JSON (or the link) and paste it into **Load settings**, or drop a PNG
saved by this app (its settings are stored inside the file).
"""
