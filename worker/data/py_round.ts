/** Python 3's `round(x)`: to the nearest integer, ties to even (torchvision's crop arithmetic uses it). */
export function pyRound(x: number): number {
  const r = Math.round(x);
  // Math.round sends ties up; Python sends them to the even neighbour.
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
