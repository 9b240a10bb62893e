//! Names beside codes in published tables: a drug's name beside its ATC code, a disease's beside
//! its ORPHA code, a centre's beside its FINESS, a region's beside its INSEE code, MedDRA terms
//! beside theirs. Added once a table is suppressed: names are functions of the codes, so they
//! tell a reader nothing the codes do not.

use std::collections::HashMap;

use polars::prelude::*;

use crate::snapshot::Snapshot;

/// (code column, kind of name, name column), in the order columns are looked for.
const CODE_COLUMNS: &[(&str, &str, &str)] = &[
    ("drug_atc", "drug", "drug_name"),
    ("from_drug_atc", "drug", "from_drug_name"),
    ("to_drug_atc", "drug", "to_drug_name"),
    ("orpha_code", "disease", "disease_name"),
    ("centre_finess", "centre", "centre_name"),
    ("region_code", "region", "region_name"),
    ("meddra_soc_code", "meddra_soc", "meddra_soc_name"),
    ("meddra_pt_code", "meddra_pt", "meddra_pt_name"),
];

/// Of a (characteristic, category) table: which characteristics' categories are codes.
const CATEGORY_KINDS: &[(&str, &str)] = &[("orpha_code", "disease"), ("region", "region")];

/// The names a snapshot carries (its `labels` table), and the regions' names.
#[derive(Debug, Default, Clone)]
pub struct Names {
    by_code: HashMap<(String, String), String>,
}

impl Names {
    /// Names from the snapshot's `labels` table (absent from snapshots written before it
    /// existed: no names then) and the regions shipped with the software.
    pub fn load(snapshot: &Snapshot) -> PolarsResult<Names> {
        let mut by_code = HashMap::new();
        if snapshot.manifest.files.contains_key("labels.parquet") {
            let labels = snapshot.scan("labels")?.collect()?;
            let (kind, code, name) = (
                labels.column("kind")?.str()?.clone(),
                labels.column("code")?.str()?.clone(),
                labels.column("name")?.str()?.clone(),
            );
            for i in 0..labels.height() {
                if let (Some(k), Some(c), Some(n)) = (kind.get(i), code.get(i), name.get(i)) {
                    by_code.insert((k.to_owned(), c.to_owned()), n.to_owned());
                }
            }
        }
        for (code, name) in crate::indicators::region_names() {
            by_code.insert(("region".to_owned(), code), name);
        }
        Ok(Names { by_code })
    }

    pub fn get(&self, kind: &str, code: &str) -> Option<&str> {
        self.by_code
            .get(&(kind.to_owned(), code.to_owned()))
            .map(String::as_str)
    }

    /// `table` with a name column right after each code column it has (empty where the code
    /// has no name, or is a total or `UNKNOWN`), and a `category_name` after the `category` of a
    /// (characteristic, category) table whose categories are codes.
    pub fn annotate(&self, mut table: DataFrame) -> PolarsResult<DataFrame> {
        for (code_column, kind, name_column) in CODE_COLUMNS {
            let Some(position) = table.get_column_index(code_column) else {
                continue;
            };
            if table.get_column_index(name_column).is_some() {
                continue;
            }
            let codes = table.column(code_column)?.cast(&DataType::String)?;
            let names: Vec<Option<String>> = codes
                .str()?
                .iter()
                .map(|c| c.and_then(|c| self.get(kind, c)).map(str::to_owned))
                .collect();
            table.insert_column(position + 1, Column::from(Series::new((*name_column).into(), names)))?;
        }
        if let (Some(characteristic), Some(position)) = (
            table.get_column_index("characteristic"),
            table.get_column_index("category"),
        ) {
            let characteristics = table.select_at_idx(characteristic).cloned();
            let categories = table.column("category")?.cast(&DataType::String)?;
            if let Some(characteristics) = characteristics {
                let characteristics = characteristics.cast(&DataType::String)?;
                let names: Vec<Option<String>> = characteristics
                    .str()?
                    .iter()
                    .zip(categories.str()?.iter())
                    .map(|(ch, cat)| {
                        let kind = CATEGORY_KINDS.iter().find(|(c, _)| Some(*c) == ch).map(|(_, k)| *k)?;
                        self.get(kind, cat?).map(str::to_owned)
                    })
                    .collect();
                table.insert_column(position + 1, Column::from(Series::new("category_name".into(), names)))?;
            }
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_go_right_after_their_codes_and_unknown_codes_stay_nameless() {
        let mut names = Names::default();
        names
            .by_code
            .insert(("drug".into(), "B02BX07".into()), "concizumab".into());
        names
            .by_code
            .insert(("region".into(), "11".into()), "Île-de-France".into());
        names
            .by_code
            .insert(("disease".into(), "98878".into()), "Hémophilie A".into());
        let table = df!(
            "pathway" => ["AAC", "AAC"],
            "drug_atc" => ["B02BX07", "X00XX00"],
            "region_code" => ["11", "UNKNOWN"],
            "patients" => ["12", "<10"],
        )
        .unwrap();
        let out = names.annotate(table).unwrap();
        let columns: Vec<&str> = out.get_column_names().iter().map(|c| c.as_str()).collect();
        assert_eq!(
            columns,
            [
                "pathway",
                "drug_atc",
                "drug_name",
                "region_code",
                "region_name",
                "patients"
            ]
        );
        let drug = out.column("drug_name").unwrap().str().unwrap().clone();
        assert_eq!((drug.get(0), drug.get(1)), (Some("concizumab"), None));
        let region = out.column("region_name").unwrap().str().unwrap().clone();
        assert_eq!((region.get(0), region.get(1)), (Some("Île-de-France"), None));

        let characteristics = df!(
            "characteristic" => ["orpha_code", "sex"],
            "category" => ["98878", "MALE"],
            "patients" => ["40", "38"],
        )
        .unwrap();
        let out = names.annotate(characteristics).unwrap();
        let name = out.column("category_name").unwrap().str().unwrap().clone();
        assert_eq!((name.get(0), name.get(1)), (Some("Hémophilie A"), None));
    }
}
