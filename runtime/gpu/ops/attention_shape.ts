/**
 * The head shapes the attention kernels (kernels/attention.wgsl) run: checked here, apart from the GPU code, so
 * that a model's config is refused when it is read rather than on its first request.
 */

/** Query rows per tile (kernels/attention.wgsl R): 16 / G positions times the G heads sharing a KV head. */
export const TILE_ROWS = 16;
export const MAX_HEAD_DIM = 128;

export interface HeadShape {
  headsQ: number;
  headsKv: number;
  headDim: number;
}

/** Why the kernels cannot run these heads, or undefined when they can. */
export function headShapeProblem({ headsQ, headsKv, headDim }: HeadShape): string | undefined {
  const group = headsQ / headsKv;
  if (!Number.isInteger(group) || TILE_ROWS % group !== 0) {
    return `${headsQ} query heads over ${headsKv} KV heads (the group must divide ${TILE_ROWS})`;
  }
  if (!Number.isInteger(headDim) || headDim < 4 || headDim > MAX_HEAD_DIM || headDim % 4) {
    return `head dimension ${headDim} (must be a multiple of 4 in 4..${MAX_HEAD_DIM})`;
  }
  return undefined;
}
