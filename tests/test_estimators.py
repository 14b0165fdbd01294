"""The estimators on their own, with an analytic density (a sphere), no network: the occupancy grid marks the
cells inside occupied and samples only there; coarse-to-fine puts its fine samples where the coarse weights are."""
import torch

from nerf.estimators import CoarseToFine, OccupancyGrid

AABB = torch.tensor([-0.4, -0.4, -0.4, 0.4, 0.4, 0.4])
RADIUS = 0.2


def sphere_density(x):  # x [M,3] -> [M]: 100 inside the sphere, 0 outside
    return torch.where(x.norm(dim=-1) < RADIUS, 100.0, 0.0)


def rays(n, seed=0):
    """Rays from z = 1 towards the origin region, directions with z = -1 (not unit length)."""
    g = torch.Generator().manual_seed(seed)
    o = torch.tensor([0.0, 0.0, 1.0]).expand(n, 3).clone()
    d = torch.cat([(torch.rand(n, 2, generator=g) - 0.5) * 0.6, -torch.ones(n, 1)], -1)
    return o, d, torch.full((n,), 0.5), torch.full((n,), 1.5)


def cell_centres(grid):
    r = grid.resolution
    ijk = torch.stack(torch.meshgrid(*[torch.arange(r)] * 3, indexing="ij"), -1).reshape(-1, 3).float()
    return AABB[:3] + (ijk + 0.5) / r * (AABB[3:] - AABB[:3])


def test_grid_marks_the_sphere_and_samples_only_inside():
    torch.manual_seed(0)
    grid = OccupancyGrid(AABB, resolution=16, n_samples=64, every=1)
    o, d, near, far = rays(256)
    before = grid.sampling(o, d, near, far, perturb=False)
    assert before.t.shape == (256, 64) and before.keep is None  # no grid yet: every sample
    assert not grid.update_every_n_steps(0, sphere_density)  # step 0: no update
    assert grid.update_every_n_steps(1, sphere_density) and grid.ready
    centres = cell_centres(grid)
    occupied = grid.mask.reshape(-1)
    cell = (AABB[3:] - AABB[:3])[0] / 16
    assert occupied[centres.norm(dim=-1) < RADIUS - cell].all()  # inside: occupied
    assert not occupied[centres.norm(dim=-1) > RADIUS + 2.5 * cell].any()  # beyond the one-cell dilation: empty
    sphere_share = 4 / 3 * torch.pi * RADIUS ** 3 / 0.8 ** 3
    assert sphere_share < grid.occupied_share() < 4 * sphere_share
    samples = grid.sampling(o, d, near, far, perturb=True)
    pts = o[:, None] + samples.t[..., None] * d[:, None]
    kept = pts[samples.keep]
    assert len(kept) > 0 and kept.norm(dim=-1).max() < RADIUS + 2.5 * cell  # only near the sphere
    inside = pts.norm(dim=-1) < RADIUS - cell
    assert samples.keep[inside].all()  # nothing inside the sphere is skipped


def test_grid_lookup_matches_the_cell_of_each_point_and_nothing_outside():
    """occupied() (a mask with an empty border, no inside test) against the plain cell arithmetic, on points inside
    and outside the box."""
    torch.manual_seed(1)
    grid = OccupancyGrid(AABB, resolution=8)
    grid.mask.copy_(torch.rand(8, 8, 8) < 0.5)
    grid.is_ready.fill_(True)
    pts = (torch.rand(20000, 3) - 0.5) * 1.2  # the box is [-0.4, 0.4]^3: about 40% of the points are outside
    u = (pts - AABB[:3]) / (AABB[3:] - AABB[:3])
    inside = ((u >= 0) & (u < 1)).all(-1)
    ijk = (u * 8).floor().long().clamp(0, 7)
    expected = grid.mask[ijk[:, 0], ijk[:, 1], ijk[:, 2]] & inside
    got = grid.occupied(pts)
    assert 0.2 < float((~inside).float().mean()) < 0.8 and bool(expected.any())
    assert torch.equal(got, expected)
    assert torch.equal(grid.occupied(pts.view(100, 200, 3)), expected.view(100, 200))  # any leading shape


def test_grid_warp_keeps_points_that_move_into_the_sphere():
    grid = OccupancyGrid(AABB, resolution=16, n_samples=64, every=1)
    grid.update_every_n_steps(1, sphere_density)
    o = torch.tensor([[0.3, 0.0, 1.0]])  # a ray that passes beside the sphere
    d = torch.tensor([[0.0, 0.0, -1.0]])
    near, far = torch.tensor([0.5]), torch.tensor([1.5])
    assert not grid.sampling(o, d, near, far, False).keep.any()
    asked = []

    def shift(pts, todo):
        asked.append(todo.clone())
        idx = todo.reshape(-1).nonzero()[:, 0]
        return idx, pts.reshape(-1, 3)[idx] - torch.tensor([0.3, 0.0, 0.0])

    assert grid.sampling(o, d, near, far, False, warp_fn=shift).keep.any()
    assert asked[0].all()  # nothing was kept before the warp, so every sample is asked about


def test_grid_aux_cache_and_decay():
    grid = OccupancyGrid(AABB, resolution=16, every=2, decay=0.5)
    height = lambda x: (sphere_density(x), (x[:, 1] > 0).float())  # noqa: E731
    assert not grid.update_every_n_steps(1, height)  # not a multiple of `every`
    assert grid.update_every_n_steps(2, height)
    x = torch.tensor([[0.0, 0.3, 0.0], [0.0, -0.3, 0.0]])
    assert torch.allclose(grid.aux_lookup(x), torch.tensor([1.0, 0.0]))
    full = grid.density.clone()
    grid.frac = 1.0
    grid.update_every_n_steps(4, lambda x: torch.zeros(x.shape[0]))  # empty now: the old density decays
    assert torch.allclose(grid.density, 0.5 * full)
    state = grid.state_dict()
    again = OccupancyGrid(AABB, resolution=16)
    again.load_state_dict(state)
    assert again.ready and torch.equal(again.mask, grid.mask)


def test_coarse_to_fine_samples_where_the_coarse_weights_are():
    est = CoarseToFine(n_samples=32, n_importance=64)
    o, d, near, far = rays(64)
    seen = []

    def weights_fn(t):  # the sphere's rendering weights at the coarse depths (no network)
        seen.append(t)
        pts = o[:, None] + t[..., None] * d[:, None]
        sigma = sphere_density(pts.reshape(-1, 3)).view(t.shape)
        from nerf.rendering import render_weights

        return render_weights(sigma, t, far, ray_norm=d.norm(dim=-1))[0]

    samples = est.sampling(o, d, near, far, perturb=True, weights_fn=weights_fn)
    assert samples.t.shape == (64, 96) and samples.keep is None
    assert (samples.t[:, 1:] >= samples.t[:, :-1]).all()
    assert seen[0].shape == (64, 32)
    fine = samples.t[:, :]  # rays that hit the sphere: most fine depths within its depth range
    dn = torch.nn.functional.normalize(d, dim=-1)
    hit = (o - (o * dn).sum(-1, keepdim=True) * dn).norm(dim=-1) < RADIUS * 0.9
    assert hit.sum() > 10
    pts = o[hit, None] + fine[hit, ..., None] * d[hit, None]
    near_sphere = (pts.norm(dim=-1) < RADIUS + 0.05).float().mean()
    assert near_sphere > 0.5  # 64 of 96 depths are drawn from the weights, which sit on the sphere's front
