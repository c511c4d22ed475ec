// The viridis colour map shared by the views' scripts (prepended to each by tabs/linked.js()).
const VIRIDIS = [
  [68, 1, 84], [72, 40, 120], [62, 73, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37],
];
function cmap(u) {
  u = Math.max(0, Math.min(1, Number.isFinite(u) ? u : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(u), VIRIDIS.length - 2), f = u - i;
  const a = VIRIDIS[i], b = VIRIDIS[i + 1];
  return `rgb(${a.map((v, k) => Math.round(v + f * (b[k] - v))).join(",")})`;
}
