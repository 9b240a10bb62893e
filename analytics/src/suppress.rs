//! Small-cell suppression of published tables.
//!
//! **What a reader is assumed to know.** Besides every published cell, a reader may know each
//! line total of a table (every dimension fixed but one: row and column totals of a
//! two-dimensional table) and its grand total, from this report or from elsewhere, when it adds
//! up two cells or more and is not itself below the threshold: a small total is masked wherever
//! it is published, like a small cell. Intermediate margins of a table of three dimensions or
//! more (totals over two of them) are not assumed known: protecting against all of them would
//! mask most of such a table. Totals that this report publishes as another
//! table (the safety table is the safety-by-preferred-term table summed over preferred terms)
//! are known exactly as published, masked cells included. Each count is a whole number, 0 or
//! more; a reader knows that a cell shown `<10` lies between 0 and 9 (1 and 9 where rows exist
//! only for counts of 1 or more), and that a cell shown `suppressed` is 10 or more.
//!
//! **Primary suppression** masks every count below the threshold, shown as `<threshold` (never
//! its value, never 0).
//!
//! **Complementary suppression** masks published cells of 10 or more, shown as `suppressed`,
//! until no masked cell can be worked out, by subtraction or by bounds:
//! 1. no known total is left with exactly one masked cell under it (subtraction);
//! 2. every masked cell can take at least two values consistent with everything above: for each,
//!    a change that keeps every known total and every bound is sought by linear programming over
//!    the masked cells and unknown totals linked to it. A cell for which none exists (two masked
//!    cells of 9 under a total of 18; a masked 0 beside a masked 10 under a total of 10) takes a
//!    further published cell from a total it is linked through, and both steps repeat until
//!    nothing changes. The search is over real values (the linear relaxation); for the tables
//!    published here (two-dimensional margins) its answers hold for whole numbers too.
//!
//! **Withheld rows.** The marks bound what a reader may assume, and with the known totals they
//! can still pin a small count once nothing more can be masked for it (a 0 beside a 10 under a
//! total of 10, the 10 reading `suppressed`). Such a count and every published cell of the
//! totals it is under are withheld: their rows are left out of the table, so that nothing bounds
//! them, not even their existence; while it stays pinned, the cells of the totals those are
//! under follow, for a few rounds. A count pinned by the known totals alone (every published
//! cell left out) is given away by those totals, not by this publication: nothing is withheld
//! for it, and it is reported as exposed.
//!
//! Values derived from a count (a median over the episodes counted, a rate over its events)
//! are masked with it.

use std::collections::{BTreeMap, HashMap};

use microlp::{ComparisonOp, OptimizationDirection, Problem, Variable};
use polars::prelude::*;

/// Default threshold: counts below 10 are masked.
pub const DEFAULT_THRESHOLD: u32 = 10;

/// How a published count masked to protect another cell (its value at the threshold or more) is
/// shown, and how a value derived from a masked count is shown.
pub const SUPPRESSED: &str = "suppressed";

/// How a count withheld is marked before its row is left out (see [`Mark::Withheld`]).
pub const WITHHELD: &str = "withheld";

/// How a table is published.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec<'a> {
    /// Columns that identify a cell.
    pub dimensions: &'a [&'a str],
    /// Count columns, each suppressed on its own.
    pub counts: &'a [&'a str],
    /// (value column, count column it is computed over): masked when the count is.
    pub dependents: &'a [(&'a str, &'a str)],
    /// Another published table holding this table's totals over one of its dimensions (same
    /// count columns): both are protected together.
    pub within: Option<Within<'a>>,
}

/// A published table whose cells are this table's totals over `dimension`.
#[derive(Debug, Clone, Copy)]
pub struct Within<'a> {
    pub table: &'a str,
    pub dimension: &'a str,
}

/// What suppression did to a table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SuppressionSummary {
    /// Counts below the threshold.
    pub primary: u64,
    /// Counts of the threshold or more masked to protect others.
    pub complementary: u64,
    /// Small counts that totals known outside the report would still give away whatever this
    /// table masked: 0 in a sound publication.
    #[serde(default)]
    pub exposed_by_totals: u64,
    /// Rows left out of the table because, masked the usual way, totals known elsewhere would
    /// have given a small count of theirs, or of a row under the same totals, away.
    #[serde(default)]
    pub withheld: u64,
}

/// How one cell is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Its value.
    Shown,
    /// `<threshold`: below the threshold.
    Small,
    /// `suppressed`: the threshold or more, masked to protect another cell.
    Protecting,
    /// Withheld: its row is left out of the published table, so that nothing bounds it, not
    /// even the row's existence (the policy for small counts that totals known elsewhere would
    /// otherwise give away).
    Withheld,
}

/// The cells a reader may know of, and the totals that link them.
#[derive(Debug, Clone, Default)]
pub struct Lattice {
    /// Value of each cell.
    pub values: Vec<i64>,
    /// Whether the cell is published (a table row) or only a total a reader may know.
    pub published: Vec<bool>,
    /// Each relation: (total cell, cells it adds up).
    pub relations: Vec<(usize, Vec<usize>)>,
}

impl Lattice {
    fn add(&mut self, value: i64, published: bool) -> usize {
        self.values.push(value);
        self.published.push(published);
        self.values.len() - 1
    }
}

/// Decides which cells are masked. Unpublished cells are known when not small and are never
/// masked to protect others. Returns the marks and, for published cells, whether one remains
/// exposed by known totals.
pub fn protect(lattice: &Lattice, threshold: u32) -> (Vec<Mark>, Vec<bool>) {
    let t = i64::from(threshold);
    let n = lattice.values.len();
    let mut marks: Vec<Mark> = lattice
        .values
        .iter()
        .map(|v| if *v < t { Mark::Small } else { Mark::Shown })
        .collect();
    let mut exposed = vec![false; n];
    // cell -> relations it takes part in (as total or as term).
    let mut memberships: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (r, (total, terms)) in lattice.relations.iter().enumerate() {
        memberships[*total].push(r);
        for &c in terms {
            memberships[c].push(r);
        }
    }
    if threshold < 2
        || !marks
            .iter()
            .zip(&lattice.published)
            .any(|(m, p)| *p && *m == Mark::Small)
    {
        // Nothing small is published (`<1` can only be 0): nothing to protect.
        return (marks, exposed);
    }
    // Cells that known totals pin even were every published cell masked: nothing masked can
    // protect them, so none is masked for them.
    let everything: Vec<Mark> = marks
        .iter()
        .zip(&lattice.published)
        .map(|(m, p)| if *p && *m == Mark::Shown { Mark::Protecting } else { *m })
        .collect();
    let mut useless = vec![false; n];
    for cell in pinned_cells(lattice, &everything, t, &vec![false; n], &mut vec![false; n])
        .into_iter()
        .flatten()
    {
        useless[cell] = true;
        exposed[cell] = marks[cell] != Mark::Shown;
    }
    // Cells shown able to move so far. Masking a further cell only frees a variable of the
    // search, so a cell that could move still can: each round re-examines only the others.
    let mut movable = vec![false; n];
    loop {
        subtraction_pass(lattice, &mut marks, &useless);
        let mut changed = false;
        // A further cell for each pinned one, but one per relation and round: it often frees the
        // relation's other cells.
        let mut touched = vec![false; lattice.relations.len()];
        for group in pinned_cells(lattice, &marks, t, &useless, &mut movable) {
            for cell in group {
                if exposed[cell] || memberships[cell].iter().any(|&r| touched[r]) {
                    continue;
                }
                match nearest_protector(lattice, &marks, &useless, &memberships, cell) {
                    Some(p) => {
                        marks[p] = Mark::Protecting;
                        for &r in &memberships[p] {
                            touched[r] = true;
                        }
                        changed = true;
                    }
                    None => exposed[cell] = true,
                }
            }
        }
        if !changed {
            withhold_exposed(lattice, &mut marks, &mut exposed, &memberships, t);
            return (marks, exposed);
        }
    }
}

/// Rounds of widening around a small count still exposed (see [`withhold_exposed`]).
const WITHHOLD_ROUNDS: usize = 3;

/// The policy for small counts that known totals still pin once masked the usual way (the
/// marks themselves bound what a reader may assume: `suppressed` is the threshold or more):
/// each such count, and every published cell of the totals it is under, is withheld, published
/// with no bound at all; while it stays pinned, the cells of the totals those are under are
/// withheld too, for a few rounds. What stays pinned after that is given away by the known
/// totals alone, whatever is published, and is reported as exposed.
fn withhold_exposed(lattice: &Lattice, marks: &mut [Mark], exposed: &mut [bool], memberships: &[Vec<usize>], t: i64) {
    let n = lattice.values.len();
    let small: Vec<usize> = (0..n)
        .filter(|&c| exposed[c] && lattice.published[c] && marks[c] == Mark::Small)
        .collect();
    if small.is_empty() {
        return;
    }
    // Those pinned even were every published cell left out are given away by the known totals
    // alone: withholding would lose rows for nothing. They stay reported as exposed.
    let nothing: Vec<Mark> = marks
        .iter()
        .zip(&lattice.published)
        .map(|(m, p)| if *p { Mark::Withheld } else { *m })
        .collect();
    let hopeless: Vec<usize> = pinned_cells(lattice, &nothing, t, &vec![false; n], &mut vec![false; n])
        .into_iter()
        .flatten()
        .collect();
    let small: Vec<usize> = small.into_iter().filter(|c| !hopeless.contains(c)).collect();
    if small.is_empty() {
        return;
    }
    let mut frontier = small.clone();
    let mut seen_relations = vec![false; lattice.relations.len()];
    for _ in 0..WITHHOLD_ROUNDS {
        let mut next = Vec::new();
        for &c in &frontier {
            if lattice.published[c] && marks[c] != Mark::Withheld {
                marks[c] = Mark::Withheld;
            }
            for &r in &memberships[c] {
                if std::mem::replace(&mut seen_relations[r], true) {
                    continue;
                }
                for m in members(&lattice.relations[r]) {
                    if lattice.published[m] && marks[m] != Mark::Withheld {
                        marks[m] = Mark::Withheld;
                        next.push(m);
                    }
                }
            }
        }
        let pinned: Vec<usize> = pinned_cells(lattice, marks, t, &vec![false; n], &mut vec![false; n])
            .into_iter()
            .flatten()
            .collect();
        for &c in &small {
            exposed[c] = pinned.contains(&c);
        }
        if !small.iter().any(|&c| exposed[c]) || next.is_empty() {
            return;
        }
        frontier = next;
    }
}

fn members(relation: &(usize, Vec<usize>)) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(relation.0).chain(relation.1.iter().copied())
}

/// The published, shown cell of a relation that protects at least cost: the smallest (first in
/// order on ties) of those that can protect at all (`useless`: pinned by known totals whatever
/// is masked), or of any when `any` (subtraction by a reader who knows only some totals).
fn cheapest(
    lattice: &Lattice,
    marks: &[Mark],
    useless: &[bool],
    any: bool,
    relation: &(usize, Vec<usize>),
) -> Option<usize> {
    members(relation)
        .filter(|&c| lattice.published[c] && marks[c] == Mark::Shown && (any || !useless[c]))
        .min_by_key(|&c| (useless[c], lattice.values[c], c))
}

/// Step 1: a known total with exactly one masked published cell under it gives that cell away;
/// mask a second one, until no total does.
fn subtraction_pass(lattice: &Lattice, marks: &mut [Mark], useless: &[bool]) {
    loop {
        let mut changed = false;
        for relation in &lattice.relations {
            let mut hidden = members(relation).filter(|&c| marks[c] != Mark::Shown);
            let (Some(lone), None) = (hidden.next(), hidden.next()) else {
                continue;
            };
            if !lattice.published[lone] {
                // An unpublished small total worked out from known ones: not a cell of ours, and
                // the bounds step sees what it implies for ours.
                continue;
            }
            if let Some(p) = cheapest(lattice, marks, useless, true, relation) {
                marks[p] = Mark::Protecting;
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

/// The published shown cell to mask for a pinned cell: from the first relation, going outwards
/// from the cell through masked cells, that has one.
fn nearest_protector(
    lattice: &Lattice,
    marks: &[Mark],
    useless: &[bool],
    memberships: &[Vec<usize>],
    cell: usize,
) -> Option<usize> {
    let mut seen_cells = vec![false; lattice.values.len()];
    let mut seen_relations = vec![false; lattice.relations.len()];
    let mut queue = std::collections::VecDeque::from([cell]);
    seen_cells[cell] = true;
    while let Some(c) = queue.pop_front() {
        for &r in &memberships[c] {
            if std::mem::replace(&mut seen_relations[r], true) {
                continue;
            }
            let relation = &lattice.relations[r];
            if let Some(p) = cheapest(lattice, marks, useless, false, relation) {
                return Some(p);
            }
            for m in members(relation) {
                if marks[m] != Mark::Shown && !std::mem::replace(&mut seen_cells[m], true) {
                    queue.push_back(m);
                }
            }
        }
    }
    None
}

/// Largest change sought along a direction (directions are scale-free; this bounds the search).
const STEP_BOUND: f64 = 1.0e4;
/// Smallest component of a solved direction taken as a change.
const MOVES: f64 = 1.0e-6;

/// Step 2: masked published cells that cannot change value while every known total and every
/// bound holds, by group of linked cells. Cells `known_pinned` or already `movable` are not
/// examined again; those found able to move are added to `movable`.
fn pinned_cells(
    lattice: &Lattice,
    marks: &[Mark],
    t: i64,
    known_pinned: &[bool],
    movable: &mut [bool],
) -> Vec<Vec<usize>> {
    let n = lattice.values.len();
    let hidden: Vec<bool> = marks.iter().map(|m| *m != Mark::Shown).collect();
    // Relations over masked cells only: sum of changes of the terms = change of the total.
    let constraints: Vec<Vec<(usize, f64)>> = lattice
        .relations
        .iter()
        .filter(|rel| members(rel).any(|c| hidden[c]))
        .map(|(total, terms)| {
            let mut row: Vec<(usize, f64)> = terms.iter().filter(|&&c| hidden[c]).map(|&c| (c, 1.0)).collect();
            if hidden[*total] {
                row.push((*total, -1.0));
            }
            row
        })
        .collect();
    // Components of masked cells linked by relations.
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for row in &constraints {
        for w in row.windows(2) {
            let (a, b) = (find(&mut parent, w[0].0), find(&mut parent, w[1].0));
            if a != b {
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    let mut components: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for c in (0..n).filter(|&c| hidden[c]) {
        let root = find(&mut parent, c);
        components.entry(root).or_default().push(c);
    }
    let mut rows_of: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, row) in constraints.iter().enumerate() {
        if let Some(&(c, _)) = row.first() {
            let root = find(&mut parent, c);
            rows_of.entry(root).or_default().push(i);
        }
    }
    let mut pinned = Vec::new();
    for (root, cells) in components {
        if !cells
            .iter()
            .any(|&c| lattice.published[c] && !known_pinned[c] && !movable[c])
        {
            continue;
        }
        let rows: Vec<&Vec<(usize, f64)>> = rows_of
            .get(&root)
            .map(|r| r.iter().map(|&i| &constraints[i]).collect())
            .unwrap_or_default();
        let group = pinned_in_component(lattice, marks, t, known_pinned, movable, &cells, &rows);
        if !group.is_empty() {
            pinned.push(group);
        }
    }
    pinned
}

/// Which way a masked cell may move within its bounds: (up, down).
fn freedom(value: i64, mark: Mark, t: i64) -> (bool, bool) {
    match mark {
        // Between 0 and t-1; a reader of a table whose rows exist only for counts of 1 or more
        // may know it is 1 or more: the tighter bound is assumed.
        Mark::Small => (value < t - 1, value > value.min(1)),
        Mark::Protecting => (true, value > t),
        // Any count, down to 0: a withheld row is left out, so not even its existence is known.
        Mark::Withheld => (true, value > 0),
        Mark::Shown => (false, false),
    }
}

fn pinned_in_component(
    lattice: &Lattice,
    marks: &[Mark],
    t: i64,
    known_pinned: &[bool],
    movable: &mut [bool],
    cells: &[usize],
    rows: &[&Vec<(usize, f64)>],
) -> Vec<usize> {
    let index: HashMap<usize, usize> = cells.iter().enumerate().map(|(i, &c)| (c, i)).collect();
    let free: Vec<(bool, bool)> = cells.iter().map(|&c| freedom(lattice.values[c], marks[c], t)).collect();
    // Unpublished totals need no protection; cells already known to be pinned, or shown able to
    // move, need no new proof.
    let mut certified: Vec<bool> = cells
        .iter()
        .map(|&c| !lattice.published[c] || known_pinned[c] || movable[c])
        .collect();
    // Solves for a direction of change; `want` gives, for some cells, the sign sought (the
    // number of them moving that way is maximised), `force` one cell's required sign.
    let solve = |want: &[(usize, f64)], force: Option<(usize, f64)>| -> Option<Vec<f64>> {
        let mut problem = Problem::new(OptimizationDirection::Maximize);
        let vars: Vec<Variable> = free
            .iter()
            .enumerate()
            .map(|(i, &(up, down))| {
                let mut lo = if down { -STEP_BOUND } else { 0.0 };
                let mut hi = if up { STEP_BOUND } else { 0.0 };
                if let Some((f, sign)) = force
                    && f == i
                {
                    if sign > 0.0 {
                        lo = 1.0;
                    } else {
                        hi = -1.0;
                    }
                }
                problem.add_var(0.0, (lo, hi))
            })
            .collect();
        for row in rows {
            let expr: Vec<(Variable, f64)> = row.iter().map(|&(c, k)| (vars[index[&c]], k)).collect();
            problem.add_constraint(expr.as_slice(), ComparisonOp::Eq, 0.0);
        }
        for &(i, sign) in want {
            let s = problem.add_var(1.0, (0.0, 1.0));
            // s <= sign * d
            problem.add_constraint([(s, 1.0), (vars[i], -sign)].as_slice(), ComparisonOp::Le, 0.0);
        }
        let solution = problem.solve().ok()?.into_solution().ok()?;
        Some(vars.iter().map(|v| solution.var_value(*v)).collect())
    };
    let certify = |d: &[f64], certified: &mut Vec<bool>| {
        for (i, x) in d.iter().enumerate() {
            if x.abs() > MOVES {
                certified[i] = true;
            }
        }
    };
    // Many cells at once: first each one in the direction its bounds allow (up when both),
    // then the remaining ones down.
    for pass in 0..2 {
        let want: Vec<(usize, f64)> = (0..cells.len())
            .filter(|&i| !certified[i])
            .filter_map(|i| match (free[i], pass) {
                ((true, _), 0) => Some((i, 1.0)),
                ((false, true), 0) => Some((i, -1.0)),
                ((true, true), 1) => Some((i, -1.0)),
                _ => None,
            })
            .collect();
        if want.is_empty() {
            continue;
        }
        if let Some(d) = solve(&want, None) {
            certify(&d, &mut certified);
        }
    }
    // Then one by one.
    for i in 0..cells.len() {
        if certified[i] {
            continue;
        }
        for (allowed, sign) in [(free[i].0, 1.0), (free[i].1, -1.0)] {
            if certified[i] || !allowed {
                continue;
            }
            if let Some(d) = solve(&[], Some((i, sign))) {
                certify(&d, &mut certified);
            }
        }
    }
    let mut pinned = Vec::new();
    for (&c, ok) in cells.iter().zip(&certified) {
        if !ok {
            pinned.push(c);
        } else if lattice.published[c] && !known_pinned[c] {
            movable[c] = true;
        }
    }
    pinned
}

/// Dimension values of a table as interned codes, one vector per dimension.
fn codes(df: &DataFrame, dimensions: &[&str], dictionary: &mut [HashMap<String, u32>]) -> PolarsResult<Vec<Vec<u32>>> {
    dimensions
        .iter()
        .zip(dictionary.iter_mut())
        .map(|(d, dict)| {
            let c = df.column(d)?.cast(&DataType::String)?;
            let s = c.str()?.clone();
            Ok((0..df.height())
                .map(|i| {
                    let v = s.get(i).unwrap_or("");
                    let next = dict.len() as u32;
                    *dict.entry(v.to_owned()).or_insert(next)
                })
                .collect())
        })
        .collect()
}

/// Builds the cells a reader may know of for one count column: the table's rows, its line
/// totals (every dimension but one fixed) and grand total, and the rows of `linked` tables
/// (their dimensions a subset of the table's, their counts its totals) with their own line
/// totals. Returns the lattice and, per table (the table first), the lattice cell of each row.
fn build_lattice(
    table: (&DataFrame, &TableSpec<'_>),
    linked: &[(&DataFrame, &TableSpec<'_>)],
    count: &str,
) -> PolarsResult<(Lattice, Vec<Vec<usize>>)> {
    let (df, spec) = table;
    let dims = spec.dimensions;
    let n = dims.len();
    let mut dictionary: Vec<HashMap<String, u32>> = vec![HashMap::new(); n];
    let keys = codes(df, dims, &mut dictionary)?;
    let values = count_values(df, count)?;
    let full: u32 = (1u32 << n) - 1;
    // Levels (bitmask of the dimensions kept) whose totals a reader may know.
    let lines_of = |level: u32| {
        (0..n)
            .filter(move |d| level & (1 << d) != 0)
            .map(move |d| level & !(1 << d))
    };
    let mut wanted: std::collections::BTreeSet<u32> = std::iter::once(0).chain(lines_of(full)).collect();
    let mut linked_levels = Vec::with_capacity(linked.len());
    for (_, linked_spec) in linked {
        let mut level = 0u32;
        for d in linked_spec.dimensions {
            let Some(p) = dims.iter().position(|x| x == d) else {
                return Err(PolarsError::ComputeError(
                    format!("linked table dimension {d} is not one of {dims:?}").into(),
                ));
            };
            level |= 1 << p;
        }
        wanted.insert(level);
        wanted.extend(lines_of(level));
        linked_levels.push(level);
    }
    wanted.remove(&full);
    let key_at = |row: usize, level: u32| -> Vec<u32> {
        (0..n).filter(|d| level & (1 << d) != 0).map(|d| keys[d][row]).collect()
    };
    let mut out = Lattice::default();
    let mut levels: BTreeMap<u32, HashMap<Vec<u32>, usize>> = BTreeMap::new();
    let mut rows_to_cells = vec![Vec::with_capacity(df.height())];
    let mut finest = HashMap::with_capacity(df.height());
    for (row, value) in values.iter().enumerate() {
        let cell = out.add(*value, true);
        rows_to_cells[0].push(cell);
        finest.insert(key_at(row, full), cell);
    }
    levels.insert(full, finest);
    // Coarser levels, finest first, in a fixed order. A total is the cells it covers, whatever
    // level it is seen at: one row of the table, or a total already met at a finer level.
    let mut by_cover: HashMap<Vec<usize>, usize> = HashMap::new();
    let mut order: Vec<u32> = wanted.iter().copied().collect();
    order.sort_by_key(|l| (std::cmp::Reverse(l.count_ones()), *l));
    for &level in &order {
        let mut sums: BTreeMap<Vec<u32>, (i64, Vec<usize>)> = BTreeMap::new();
        for (row, value) in values.iter().enumerate() {
            let entry = sums.entry(key_at(row, level)).or_insert((0, Vec::new()));
            entry.0 += value;
            entry.1.push(row);
        }
        let mut cells = HashMap::with_capacity(sums.len());
        for (key, (sum, covered)) in sums {
            let cell = if let [row] = covered.as_slice() {
                rows_to_cells[0][*row]
            } else {
                *by_cover.entry(covered).or_insert_with(|| out.add(sum, false))
            };
            cells.insert(key, cell);
        }
        levels.insert(level, cells);
    }
    // Published totals: their rows are those cells.
    for ((linked_df, linked_spec), level) in linked.iter().zip(&linked_levels) {
        let positions: Vec<usize> = linked_spec
            .dimensions
            .iter()
            .map(|d| dims.iter().position(|x| x == d).unwrap_or(0))
            .collect();
        let mut linked_dict: Vec<HashMap<String, u32>> = positions.iter().map(|&p| dictionary[p].clone()).collect();
        let linked_keys = codes(linked_df, linked_spec.dimensions, &mut linked_dict)?;
        let linked_values = count_values(linked_df, count)?;
        let mut key_order: Vec<usize> = (0..positions.len()).collect();
        key_order.sort_by_key(|&i| positions[i]);
        let mut cells = Vec::with_capacity(linked_df.height());
        for (row, value) in linked_values.iter().enumerate() {
            let key: Vec<u32> = key_order.iter().map(|&i| linked_keys[i][row]).collect();
            match levels.get(level).and_then(|l| l.get(&key)) {
                Some(&cell) if out.values[cell] == *value => {
                    out.published[cell] = true;
                    cells.push(cell);
                }
                found => {
                    return Err(PolarsError::ComputeError(
                        format!(
                            "{count}: a published total ({value}) is not the sum of the cells it covers ({:?})",
                            found.map(|&c| out.values[c])
                        )
                        .into(),
                    ));
                }
            }
        }
        rows_to_cells.push(cells);
    }
    // Relations: each total is the sum of the cells one dimension finer under it, at each finer
    // level a reader may know of (the table's rows when there is none).
    for &level in &order {
        let finer: Vec<u32> = (0..n)
            .filter(|d| level & (1 << d) == 0)
            .map(|d| level | (1 << d))
            .filter(|l| *l == full || wanted.contains(l))
            .collect();
        let finer = if finer.is_empty() { vec![full] } else { finer };
        for f in finer {
            let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            let mut rows: Vec<(&Vec<u32>, &usize)> = levels[&f].iter().collect();
            rows.sort();
            for (key, cell) in rows {
                let coarse: Vec<u32> = (0..n)
                    .filter(|d| f & (1 << d) != 0)
                    .zip(key)
                    .filter(|(d, _)| level & (1 << d) != 0)
                    .map(|(_, k)| *k)
                    .collect();
                if let Some(&total) = levels[&level].get(&coarse) {
                    groups.entry(total).or_default().push(*cell);
                }
            }
            // A total over one cell is that cell: nothing to relate.
            out.relations
                .extend(groups.into_iter().filter(|(total, terms)| terms.as_slice() != [*total]));
        }
    }
    Ok((out, rows_to_cells))
}

fn count_values(df: &DataFrame, count: &str) -> PolarsResult<Vec<i64>> {
    let column = df.column(count)?.cast(&DataType::Int64)?;
    let ca = column.i64()?;
    Ok((0..ca.len()).map(|i| ca.get(i).unwrap_or(0)).collect())
}

/// Publishes a table: dimensions unchanged, counts and their dependent values as text, masked
/// ones shown as `<threshold` or `suppressed`.
pub fn suppress(df: &DataFrame, spec: &TableSpec<'_>, threshold: u32) -> PolarsResult<(DataFrame, SuppressionSummary)> {
    let mut out = suppress_linked((df, spec), &[], threshold)?;
    Ok(out.remove(0))
}

/// Publishes a table together with the tables holding its totals (`linked`), protected as one:
/// the table first, then each linked table.
pub fn suppress_linked(
    table: (&DataFrame, &TableSpec<'_>),
    linked: &[(&DataFrame, &TableSpec<'_>)],
    threshold: u32,
) -> PolarsResult<Vec<(DataFrame, SuppressionSummary)>> {
    let all: Vec<(&DataFrame, &TableSpec<'_>)> = std::iter::once(table).chain(linked.iter().copied()).collect();
    let mut marks_by_table: Vec<BTreeMap<&str, Vec<Mark>>> = vec![BTreeMap::new(); all.len()];
    let mut summaries = vec![SuppressionSummary::default(); all.len()];
    for count in table.1.counts {
        let (lattice, rows_to_cells) = build_lattice(table, linked, count)?;
        let (marks, exposed) = protect(&lattice, threshold);
        for (t, cells) in rows_to_cells.iter().enumerate() {
            let summary = &mut summaries[t];
            for &c in cells {
                match marks[c] {
                    Mark::Small => summary.primary += 1,
                    Mark::Protecting => summary.complementary += 1,
                    Mark::Withheld => {}
                    Mark::Shown => {}
                }
                if exposed[c] {
                    summary.exposed_by_totals += 1;
                }
            }
            marks_by_table[t].insert(count, cells.iter().map(|&c| marks[c]).collect());
        }
    }
    for (marks, summary) in marks_by_table.iter().zip(summaries.iter_mut()) {
        let rows = marks.values().map(Vec::len).max().unwrap_or(0);
        summary.withheld = (0..rows)
            .filter(|&r| marks.values().any(|m| m.get(r) == Some(&Mark::Withheld)))
            .count() as u64;
    }
    all.iter()
        .zip(marks_by_table)
        .zip(summaries)
        .map(|(((df, spec), marks), summary)| Ok((publish(df, spec, &marks, threshold)?, summary)))
        .collect()
}

fn publish(
    df: &DataFrame,
    spec: &TableSpec<'_>,
    marks: &BTreeMap<&str, Vec<Mark>>,
    threshold: u32,
) -> PolarsResult<DataFrame> {
    let small = format!("<{threshold}");
    let mut columns: Vec<Column> = Vec::new();
    for d in spec.dimensions {
        columns.push(df.column(d)?.cast(&DataType::String)?);
    }
    let unmasked = vec![Mark::Shown; df.height()];
    for count in spec.counts {
        let values = count_values(df, count)?;
        let marks = marks.get(count).unwrap_or(&unmasked);
        let text: Vec<String> = values
            .iter()
            .zip(marks)
            .map(|(v, m)| match m {
                Mark::Shown => v.to_string(),
                Mark::Small => small.clone(),
                Mark::Protecting => SUPPRESSED.to_owned(),
                Mark::Withheld => WITHHELD.to_owned(),
            })
            .collect();
        columns.push(Series::new((*count).into(), text).into());
    }
    for (value, count) in spec.dependents {
        let marks = marks.get(count).unwrap_or(&unmasked);
        let values = df.column(value)?.cast(&DataType::Float64)?;
        let values = values.f64()?;
        let text: Vec<Option<String>> = (0..df.height())
            .map(|i| {
                if marks[i] != Mark::Shown {
                    Some(SUPPRESSED.to_owned())
                } else {
                    values.get(i).map(format_number)
                }
            })
            .collect();
        columns.push(Series::new((*value).into(), text).into());
    }
    let table = DataFrame::new_infer_height(columns)?;
    // Rows with a withheld count are left out.
    let kept: Vec<bool> = (0..df.height())
        .map(|r| !marks.values().any(|m| m.get(r) == Some(&Mark::Withheld)))
        .collect();
    if kept.iter().all(|k| *k) {
        return Ok(table);
    }
    table.filter(&BooleanChunked::from_slice("kept".into(), &kept))
}

/// Numbers as analysts expect them in a CSV: integers without a fraction, otherwise 2 decimals.
fn format_number(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(df: &DataFrame, name: &str) -> Vec<String> {
        let ca = df.column(name).unwrap().str().unwrap().clone();
        (0..ca.len()).map(|i| ca.get(i).unwrap_or("").to_owned()).collect()
    }

    /// Published text of each row of `original`, `withheld` for the rows left out.
    fn published_texts(original: &DataFrame, published: &DataFrame, dimensions: &[&str], name: &str) -> Vec<String> {
        let key = |df: &DataFrame, i: usize| -> Vec<String> {
            dimensions
                .iter()
                .map(|d| df.column(d).unwrap().get(i).unwrap().str_value().to_string())
                .collect()
        };
        let shown: HashMap<Vec<String>, String> = (0..published.height())
            .map(|i| (key(published, i), texts(published, name)[i].clone()))
            .collect();
        (0..original.height())
            .map(|i| {
                shown
                    .get(&key(original, i))
                    .cloned()
                    .unwrap_or_else(|| WITHHELD.to_owned())
            })
            .collect()
    }

    /// What a reader may assert about a set of rows: their sum lies in [low, high].
    struct Known {
        rows: Vec<usize>,
        low: f64,
        high: f64,
    }

    /// A reader's attack, written independently of the suppression code: the least and greatest
    /// value of the sum of `target` rows over every table consistent with what is published
    /// (shown values; `<t` between `floor` (0, or 1 where rows exist only for counts of 1 or
    /// more) and t-1; `suppressed` t or more) and with `known` sums.
    fn range(shown: &[String], t: i64, floor: f64, known: &[Known], target: &[usize]) -> (f64, f64) {
        let solve = |direction| {
            let mut problem = Problem::new(direction);
            let vars: Vec<Option<Variable>> = shown
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let objective = if target.contains(&i) { 1.0 } else { 0.0 };
                    if s.starts_with('<') {
                        Some(problem.add_var(objective, (floor, (t - 1) as f64)))
                    } else if s == SUPPRESSED {
                        Some(problem.add_var(objective, (t as f64, f64::INFINITY)))
                    } else if s == WITHHELD {
                        // Left out: not even its existence is known.
                        Some(problem.add_var(objective, (0.0, f64::INFINITY)))
                    } else {
                        None
                    }
                })
                .collect();
            let constant = |rows: &[usize]| -> f64 {
                rows.iter()
                    .filter(|&&r| vars[r].is_none())
                    .map(|&r| shown[r].parse::<f64>().unwrap())
                    .sum()
            };
            for k in known {
                let expr: Vec<(Variable, f64)> = k.rows.iter().filter_map(|&r| vars[r].map(|v| (v, 1.0))).collect();
                if expr.is_empty() {
                    continue;
                }
                let c = constant(&k.rows);
                if k.low == k.high {
                    problem.add_constraint(expr.as_slice(), ComparisonOp::Eq, k.low - c);
                } else {
                    problem.add_constraint(expr.as_slice(), ComparisonOp::Ge, k.low - c);
                    problem.add_constraint(expr.as_slice(), ComparisonOp::Le, k.high - c);
                }
            }
            let solution = problem.solve().expect("the published table is consistent");
            solution.into_solution().expect("solved").objective() + constant(target)
        };
        (
            solve(OptimizationDirection::Minimize),
            solve(OptimizationDirection::Maximize),
        )
    }

    /// Line totals (every dimension but one fixed) and the grand total of the true values,
    /// known to a reader when they add up two cells or more and are not small.
    fn known_totals(keys: &[Vec<String>], truth: &[i64], t: i64) -> Vec<Known> {
        let n = keys.first().map_or(0, Vec::len);
        let mut out = Vec::new();
        let full = (1u32 << n) - 1;
        let lines = (0..n).map(|d| full & !(1 << d));
        for subset in std::iter::once(0).chain(lines) {
            let mut groups: BTreeMap<Vec<&str>, Vec<usize>> = BTreeMap::new();
            for (row, key) in keys.iter().enumerate() {
                let k: Vec<&str> = (0..n)
                    .filter(|d| subset & (1 << d) != 0)
                    .map(|d| key[d].as_str())
                    .collect();
                groups.entry(k).or_default().push(row);
            }
            for rows in groups.into_values().filter(|rows| rows.len() >= 2) {
                let total: i64 = rows.iter().map(|&r| truth[r]).sum();
                if total >= t {
                    out.push(Known {
                        rows,
                        low: total as f64,
                        high: total as f64,
                    });
                }
            }
        }
        out
    }

    /// Masked rows whose value a reader can narrow to a single one.
    fn recovered(shown: &[String], t: i64, floor: f64, known: &[Known]) -> Vec<(usize, f64, f64)> {
        (0..shown.len())
            .filter(|&i| shown[i].starts_with('<') || shown[i] == SUPPRESSED || shown[i] == WITHHELD)
            .filter_map(|i| {
                let (low, high) = range(shown, t, floor, known, &[i]);
                (high - low < 1.0 - 1e-6).then_some((i, low, high))
            })
            .collect()
    }

    /// How many of the recovered cells are small counts.
    fn small(shown: &[String], found: &[(usize, f64, f64)]) -> u64 {
        found.iter().filter(|f| shown[f.0].starts_with('<')).count() as u64
    }

    fn table(columns: &[(&str, Vec<&str>)], n: &[i64]) -> DataFrame {
        let mut cols: Vec<Column> = columns
            .iter()
            .map(|(name, v)| Series::new((*name).into(), v.clone()).into())
            .collect();
        cols.push(Series::new("n".into(), n.to_vec()).into());
        DataFrame::new_infer_height(cols).unwrap()
    }

    fn keys_of(df: &DataFrame, dims: &[&str]) -> Vec<Vec<String>> {
        let cols: Vec<Vec<String>> = dims.iter().map(|d| texts(df, d)).collect();
        (0..df.height())
            .map(|r| cols.iter().map(|c| c[r].clone()).collect())
            .collect()
    }

    #[test]
    fn a_lone_small_cell_takes_partners_and_nothing_is_recoverable() {
        // 2 x 3 table: region x pathway.
        let df = table(
            &[
                ("region", vec!["11", "11", "11", "84", "84", "84"]),
                ("pathway", vec!["AAC", "CPC", "OFF_LABEL", "AAC", "CPC", "OFF_LABEL"]),
            ],
            &[3, 40, 25, 30, 12, 50],
        );
        let spec = TableSpec {
            dimensions: &["region", "pathway"],
            counts: &["n"],
            dependents: &[],
            within: None,
        };
        let (published, summary) = suppress(&df, &spec, 10).unwrap();
        let shown = texts(&published, "n");
        assert_eq!(summary.primary, 1);
        assert!(summary.complementary >= 3, "{summary:?}");
        assert_eq!(shown[0], "<10");
        assert!(!shown.iter().any(|s| s == "0" || s == "3"));
        let truth = [3, 40, 25, 30, 12, 50];
        let known = known_totals(&keys_of(&df, spec.dimensions), &truth, 10);
        assert_eq!(recovered(&shown, 10, 0.0, &known), vec![]);
    }

    #[test]
    fn two_masked_cells_pinned_by_their_bounds_take_a_third() {
        // 9 + 9 under a known total: each must be 9 if only the two are masked.
        let df = table(&[("region", vec!["11", "24", "84"])], &[9, 9, 40]);
        let spec = TableSpec {
            dimensions: &["region"],
            counts: &["n"],
            dependents: &[],
            within: None,
        };
        let (published, summary) = suppress(&df, &spec, 10).unwrap();
        let shown = texts(&published, "n");
        assert_eq!(shown, vec!["<10", "<10", SUPPRESSED]);
        assert_eq!(
            summary,
            SuppressionSummary {
                primary: 2,
                complementary: 1,
                exposed_by_totals: 0,
                withheld: 0
            }
        );
        // By enumeration: every masked cell can still take several values.
        let mut values: [std::collections::BTreeSet<i64>; 3] = Default::default();
        for a in 0..10 {
            for b in 0..10 {
                let c = 58 - a - b;
                if c >= 10 {
                    values[0].insert(a);
                    values[1].insert(b);
                    values[2].insert(c);
                }
            }
        }
        assert!(values.iter().all(|v| v.len() >= 2), "{values:?}");
        // And 1 + 1 beside 30: a reader who knows rows exist only for counts of 1 or more
        // would pin both.
        let df = table(&[("region", vec!["11", "24", "84"])], &[1, 1, 30]);
        let (published, _) = suppress(&df, &spec, 10).unwrap();
        assert_eq!(texts(&published, "n"), vec!["<10", "<10", SUPPRESSED]);
    }

    #[test]
    fn a_cell_at_the_threshold_does_not_protect_a_zero_beside_it() {
        // In centre A, 0 and 10 under a row total of 10: masking only the 10 with the 0 pins
        // both (0 + x = 10 with x at least 10); a third cell in the row frees them.
        let df = df!(
            "centre" => ["A", "A", "A", "B", "B", "B"],
            "drug" => ["D1", "D2", "D3", "D1", "D2", "D3"],
            "new" => [0i64, 10, 15, 25, 31, 40],
        )
        .unwrap();
        let spec = TableSpec {
            dimensions: &["centre", "drug"],
            counts: &["new"],
            dependents: &[],
            within: None,
        };
        let (published, summary) = suppress(&df, &spec, 10).unwrap();
        let shown = texts(&published, "new");
        assert_eq!(shown[0], "<10");
        assert_eq!(summary.exposed_by_totals, 0);
        let truth = [0, 10, 15, 25, 31, 40];
        let known = known_totals(&keys_of(&df, spec.dimensions), &truth, 10);
        assert_eq!(recovered(&shown, 10, 0.0, &known), vec![], "{shown:?}");

        // With two drugs only, masking the usual way cannot free them: centre A's total of 10,
        // known from elsewhere, and A/D2 shown `suppressed` (10 or more) leave A/D1 at 0. The
        // policy withholds the lines around it, with no bound, until it can move.
        let df = df!(
            "centre" => ["A", "A", "B", "B"],
            "drug" => ["D1", "D2", "D1", "D2"],
            "new" => [0i64, 10, 25, 31],
        )
        .unwrap();
        let truth = [0, 10, 25, 31];
        let known = known_totals(&keys_of(&df, spec.dimensions), &truth, 10);
        // The usual marks alone would give it away.
        let usual = vec![
            "<10".to_owned(),
            SUPPRESSED.to_owned(),
            SUPPRESSED.to_owned(),
            SUPPRESSED.to_owned(),
        ];
        assert_eq!(small(&usual, &recovered(&usual, 10, 0.0, &known)), 1);
        let (published, summary) = suppress(&df, &spec, 10).unwrap();
        let shown = published_texts(&df, &published, spec.dimensions, "new");
        // A/D1 and the cells of its lines are withheld; B/D2 may stay `suppressed`: 31 + x for
        // any x of A/D1 between 0 and 10.
        assert_eq!(shown, vec![WITHHELD, WITHHELD, WITHHELD, SUPPRESSED]);
        assert_eq!(recovered(&shown, 10, 0.0, &known), vec![], "{shown:?}");
        assert_eq!((summary.withheld, summary.exposed_by_totals), (3, 0));
    }

    #[test]
    fn a_small_count_pinned_by_known_totals_is_withheld_with_the_cells_around_it_and_no_more() {
        // Centre A: 0 and 10 under a known total of 10 pins the 0 once its partner reads
        // `suppressed`; centres B and C are large and stay shown where they can.
        let spec = TableSpec {
            dimensions: &["centre", "drug"],
            counts: &["new"],
            dependents: &[],
            within: None,
        };
        let df = df!(
            "centre" => ["A", "A", "B", "B", "C", "C"],
            "drug" => ["D1", "D2", "D1", "D2", "D1", "D2"],
            "new" => [0i64, 10, 25, 31, 40, 52],
        )
        .unwrap();
        let truth = [0, 10, 25, 31, 40, 52];
        let known = known_totals(&keys_of(&df, spec.dimensions), &truth, 10);
        let (published, summary) = suppress(&df, &spec, 10).unwrap();
        let shown = published_texts(&df, &published, spec.dimensions, "new");
        let found = recovered(&shown, 10, 0.0, &known);
        assert_eq!(small(&shown, &found), 0, "{shown:?}");
        assert_eq!(
            found.iter().filter(|f| f.0 == 0).count(),
            0,
            "A/D1 stays unknown: {shown:?}"
        );
        assert_eq!(summary.exposed_by_totals, 0);
        // Withheld: A/D1 and the cells of its lines (A's row, column D1); the others keep the
        // usual marks.
        assert_eq!(
            shown,
            vec![WITHHELD, WITHHELD, WITHHELD, SUPPRESSED, WITHHELD, SUPPRESSED],
            "{shown:?}"
        );
        assert_eq!(summary.withheld, 4);
    }

    /// Deterministic pseudo-random numbers.
    fn generator(seed: u64) -> impl FnMut() -> i64 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as i64
        }
    }

    #[test]
    fn no_masked_cell_is_recoverable_in_generated_tables() {
        let mut next = generator(42);
        let mut withheld = 0;
        for shape in [[5usize, 4, 1], [3, 3, 3], [4, 2, 3]] {
            for _ in 0..25 {
                let (mut a, mut b, mut c, mut n) = (vec![], vec![], vec![], vec![]);
                for i in 0..shape[0] {
                    for j in 0..shape[1] {
                        for k in 0..shape[2] {
                            if next() % 5 == 0 {
                                continue; // sparse: some cells do not exist
                            }
                            a.push(format!("a{i}"));
                            b.push(format!("b{j}"));
                            c.push(format!("c{k}"));
                            n.push(1 + next() % 29); // rows exist for counts of 1 or more
                        }
                    }
                }
                let df = df!("a" => a, "b" => b, "c" => c, "n" => n.clone()).unwrap();
                let spec = TableSpec {
                    dimensions: &["a", "b", "c"],
                    counts: &["n"],
                    dependents: &[],
                    within: None,
                };
                let (published, summary) = suppress(&df, &spec, 10).unwrap();
                withheld += summary.withheld;
                let shown = published_texts(&df, &published, spec.dimensions, "n");
                for (i, s) in shown.iter().enumerate() {
                    if n[i] < 10 {
                        assert!(s == "<10" || s == WITHHELD, "a small count is published: {s}");
                    } else {
                        assert!(
                            s == &n[i].to_string() || s == SUPPRESSED || s == WITHHELD,
                            "{s} for {}",
                            n[i]
                        );
                    }
                }
                let known = known_totals(&keys_of(&df, spec.dimensions), &n, 10);
                let found = recovered(&shown, 10, 1.0, &known);
                // A small count can only stay exposed when the known totals alone pin it, whatever
                // is published: the summary says so.
                assert_eq!(
                    found.iter().filter(|f| n[f.0] < 10).count() as u64,
                    summary.exposed_by_totals,
                    "recovered {found:?} from {shown:?} (truth {n:?})"
                );
            }
        }
        // The policy was exercised: some generated tables had small counts pinned by their
        // totals once masked the usual way.
        assert!(withheld > 0);
    }

    #[test]
    fn a_table_and_the_table_of_its_totals_are_protected_together() {
        // Safety by PT within safety by SOC: drug A's S2 (30 events) is masked to protect its S1
        // (5) under A's total; its published PT rows (12 + 18) would then give it away.
        let soc = df!(
            "drug" => ["A", "A", "B", "B", "C", "C"],
            "soc" => ["S1", "S2", "S1", "S2", "S1", "S2"],
            "n" => [5i64, 30, 40, 22, 35, 50],
        )
        .unwrap();
        let pt = df!(
            "drug" => ["A", "A", "A", "A", "B", "B", "B", "B", "C", "C", "C", "C"],
            "soc" => ["S1", "S1", "S2", "S2", "S1", "S1", "S2", "S2", "S1", "S1", "S2", "S2"],
            "pt" => ["P1", "P2", "P3", "P4", "P1", "P2", "P3", "P4", "P1", "P2", "P3", "P4"],
            "n" => [2i64, 3, 12, 18, 15, 25, 10, 12, 20, 15, 24, 26],
        )
        .unwrap();
        let soc_spec = TableSpec {
            dimensions: &["drug", "soc"],
            counts: &["n"],
            dependents: &[],
            within: None,
        };
        let pt_spec = TableSpec {
            dimensions: &["drug", "soc", "pt"],
            counts: &["n"],
            dependents: &[],
            within: Some(Within {
                table: "soc",
                dimension: "pt",
            }),
        };
        let out = suppress_linked((&pt, &pt_spec), &[(&soc, &soc_spec)], 10).unwrap();
        let pt_shown = texts(&out[0].0, "n");
        let soc_shown = texts(&out[1].0, "n");
        assert_eq!(soc_shown[0], "<10");
        assert_ne!(soc_shown[1], "30", "A's S2 would give S1 away under A's total of 35");
        assert!(
            pt_shown[2..4].iter().any(|s| s == SUPPRESSED),
            "A's S2 masked, its PT rows would give it away: {pt_shown:?}"
        );
        // The reader's attack over both: the PT rows, with the SOC rows as published sums of
        // them and every total of the PT table that is not small.
        assert_eq!(out[0].1.exposed_by_totals + out[1].1.exposed_by_totals, 0);
        let truth = [2i64, 3, 12, 18, 15, 25, 10, 12, 20, 15, 24, 26];
        let mut known = known_totals(&keys_of(&pt, pt_spec.dimensions), &truth, 10);
        // The (drug, soc) totals are not known from elsewhere: they are the SOC table.
        let soc_groups: Vec<Vec<usize>> = (0..6).map(|g| vec![2 * g, 2 * g + 1]).collect();
        known.retain(|k| !soc_groups.contains(&k.rows));
        for (rows, s) in soc_groups.iter().zip(&soc_shown) {
            let (low, high) = match s.as_str() {
                "<10" => (0.0, 9.0),
                SUPPRESSED => (10.0, f64::INFINITY),
                v => (v.parse().unwrap(), v.parse().unwrap()),
            };
            known.push(Known {
                rows: rows.clone(),
                low,
                high,
            });
        }
        assert_eq!(
            recovered(&pt_shown, 10, 0.0, &known),
            vec![],
            "{pt_shown:?} {soc_shown:?}"
        );
        for (rows, s) in soc_groups.iter().zip(&soc_shown) {
            if s.starts_with('<') || s == SUPPRESSED {
                let (low, high) = range(&pt_shown, 10, 0.0, &known, rows);
                assert!(
                    high - low >= 1.0,
                    "SOC total {rows:?} pinned to {low}: {pt_shown:?} {soc_shown:?}"
                );
            }
        }
    }

    #[test]
    fn values_over_a_masked_count_are_masked_with_it() {
        let df = df!("pathway" => ["AAC", "CPC", "DIRECT"], "episodes" => [4i64, 30, 25], "median_days" => [12.0, 20.5, 7.0])
            .unwrap();
        let spec = TableSpec {
            dimensions: &["pathway"],
            counts: &["episodes"],
            dependents: &[("median_days", "episodes")],
            within: None,
        };
        let (published, _) = suppress(&df, &spec, 10).unwrap();
        let medians = texts(&published, "median_days");
        assert_eq!(medians, vec![SUPPRESSED, "20.50", SUPPRESSED]);
    }
}
