// Batched transpose: x is batch × rows × cols, y is batch × cols × rows (row-major both).
//
// `tiled`: 32 × 32 tiles through workgroup memory, a workgroup of 32 × 8 invocations moving
// four elements each per tile. Reads along x's rows and writes along y's rows both coalesce;
// the tile is padded to 33 columns so the column-wise reads of workgroup memory do not all
// hit one bank. Tiles are numbered column tile fastest, then row tile, then batch; workgroup w
// takes tiles w, w + nwg.x, ... (a grid-stride loop), so the 1-D grid stays far below the
// per-dimension limit for any size.
//
// `direct`: one invocation per element of y reading the matching x element, no workgroup
// memory or barriers: the better choice on CPU adapters (llvmpipe), where a workgroup runs
// on one thread and barriers cost more than the scattered loads.

struct Params {
    batch: u32,
    rows: u32,
    cols: u32,
    row_tiles: u32,
    col_tiles: u32,
    tiles: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const TILE: u32 = 32u;
const STEP: u32 = 8u;
const DG: u32 = 64u;

var<workgroup> tile: array<array<f32, 33>, 32>;

@compute @workgroup_size(TILE, STEP)
fn tiled(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var t = wid.x; t < p.tiles; t += nwg.x) {
        let c0 = (t % p.col_tiles) * TILE;
        let rest = t / p.col_tiles;
        let r0 = (rest % p.row_tiles) * TILE;
        let base = (rest / p.row_tiles) * p.rows * p.cols;
        for (var k = 0u; k < TILE; k += STEP) {
            let r = r0 + lid.y + k;
            let c = c0 + lid.x;
            if (r < p.rows && c < p.cols) {
                tile[lid.y + k][lid.x] = x[base + r * p.cols + c];
            }
        }
        workgroupBarrier();
        for (var k = 0u; k < TILE; k += STEP) {
            // Row c of y, column r: y[c][r] = x[r][c].
            let c = c0 + lid.y + k;
            let r = r0 + lid.x;
            if (r < p.rows && c < p.cols) {
                y[base + c * p.rows + r] = tile[lid.x][lid.y + k];
            }
        }
        // The next tile's loads must not overwrite values still being read.
        workgroupBarrier();
    }
}

@compute @workgroup_size(DG)
fn direct(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * DG;
    let per = p.rows * p.cols;
    if (i >= p.batch * per) {
        return;
    }
    // i indexes y = [b][c][r].
    let b = i / per;
    let rem = i - b * per;
    let c = rem / p.rows;
    let r = rem - c * p.rows;
    y[i] = x[b * per + r * p.cols + c];
}
