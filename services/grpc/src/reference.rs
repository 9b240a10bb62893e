//! `observatory.v1.ReferenceService`: centres, prescribers, shipped drugs and diseases,
//! frameworks.

use observatory_domain::{
    Violations, codes,
    corrections::FrameworkTransition as FT,
    model::{self as m, RecordId},
    reference,
};
use observatory_proto::v1::{self as pb, reference_service_server::ReferenceService};
use observatory_store::{CentreFilter, Command, FrameworkFilter, Record};
use tonic::{Request, Response, Status};

use crate::convert::{self as c, all_some, enum_in, enum_in_opt};
use crate::guard::{Target, admit};
use crate::{ApiState, error};

#[derive(Debug, Clone)]
pub struct ReferenceApi {
    state: ApiState,
}

impl ReferenceApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl ReferenceService for ReferenceApi {
    async fn create_centre(&self, req: Request<pb::CreateCentreRequest>) -> Result<Response<pb::Centre>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let key = v.check("idempotency_key", c::idempotency_key(&r.idempotency_key));
        let finess = v.check("finess", c::finess(&r.finess));
        let name = v.check("name", codes::bounded_text(&r.name, 200));
        let centre_type = v.check(
            "type",
            enum_in!(r.r#type, pb::CentreType, "CENTRE_TYPE_", m::CentreType),
        );
        let region = v.check("region_code", c::region(&r.region_code));
        let filiere = v.check("filiere", c::filiere(&r.filiere));
        all_some!(v; key, finess, name, centre_type, region, filiere);
        let centre = m::Centre {
            finess,
            name,
            centre_type,
            region,
            filiere,
        };
        let ctx = admit(&self.state.store, &req, Target::Unbound)
            .await?
            .context(Some(key));
        self.state
            .write(Command::CreateCentre(centre), ctx, |r| match r {
                Record::Centre(x) => Some(c::centre(x)),
                _ => None,
            })
            .await
    }

    async fn get_centre(&self, req: Request<pb::GetCentreRequest>) -> Result<Response<pb::Centre>, Status> {
        let finess =
            c::finess(&req.get_ref().finess).map_err(|e| error::invalid_field("finess", e.reason, &e.description))?;
        let x = self
            .state
            .store
            .require::<m::Centre>(finess.as_str())
            .await
            .map_err(error::store)?;
        Ok(Response::new(c::centre(&x)))
    }

    async fn list_centres(
        &self,
        req: Request<pb::ListCentresRequest>,
    ) -> Result<Response<pb::ListCentresResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let page = c::page(&mut v, r.page.as_ref());
        let filter = CentreFilter {
            region: v.check("region_code", c::optional(&r.region_code, c::region)).flatten(),
            filiere: v.check("filiere", c::optional(&r.filiere, c::filiere)).flatten(),
        };
        v.into_result().map_err(error::domain)?;
        let p = self
            .state
            .store
            .list_centres(&filter, &page)
            .await
            .map_err(error::store)?;
        Ok(Response::new(pb::ListCentresResponse {
            centres: p.items.iter().map(c::centre).collect(),
            next_page_token: p.next_page_token.unwrap_or_default(),
        }))
    }

    async fn create_prescriber(
        &self,
        req: Request<pb::CreatePrescriberRequest>,
    ) -> Result<Response<pb::Prescriber>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let key = v.check("idempotency_key", c::idempotency_key(&r.idempotency_key));
        let rpps = v.check("rpps", c::rpps(&r.rpps));
        let specialty = v.check("specialty", codes::bounded_text(&r.specialty, 100));
        let centre_finess = v.check("centre_finess", c::finess(&r.centre_finess));
        all_some!(v; key, rpps, specialty, centre_finess);
        let prescriber = m::Prescriber {
            rpps,
            specialty,
            centre_finess,
        };
        let ctx = admit(&self.state.store, &req, Target::Unbound)
            .await?
            .context(Some(key));
        self.state
            .write(Command::CreatePrescriber(prescriber), ctx, |r| match r {
                Record::Prescriber(x) => Some(c::prescriber(x)),
                _ => None,
            })
            .await
    }

    async fn get_prescriber(&self, req: Request<pb::GetPrescriberRequest>) -> Result<Response<pb::Prescriber>, Status> {
        let rpps = c::rpps(&req.get_ref().rpps).map_err(|e| error::invalid_field("rpps", e.reason, &e.description))?;
        let x = self
            .state
            .store
            .require::<m::Prescriber>(rpps.as_str())
            .await
            .map_err(error::store)?;
        Ok(Response::new(c::prescriber(&x)))
    }

    async fn list_drugs(&self, req: Request<pb::ListDrugsRequest>) -> Result<Response<pb::ListDrugsResponse>, Status> {
        let prefix = req.get_ref().atc_prefix.trim().to_ascii_uppercase();
        let source = reference::source_of(reference::DRUGS_CSV);
        let drugs = reference::DRUGS
            .iter()
            .filter(|d| d.atc.starts_with(&prefix))
            .map(|d| pb::Drug {
                atc: d.atc.to_owned(),
                inn: d.inn.to_owned(),
                brand: d.brand.to_owned(),
                cis: d.cis.map(str::to_owned),
                confirmed: d.confirmed,
                source: source.to_owned(),
            })
            .collect();
        Ok(Response::new(pb::ListDrugsResponse { drugs }))
    }

    async fn list_diseases(
        &self,
        req: Request<pb::ListDiseasesRequest>,
    ) -> Result<Response<pb::ListDiseasesResponse>, Status> {
        let filiere = c::optional(&req.get_ref().filiere, c::filiere)
            .map_err(|e| error::invalid_field("filiere", e.reason, &e.description))?;
        let source = reference::source_of(reference::DISEASES_CSV);
        let diseases = reference::DISEASES
            .iter()
            .filter(|d| filiere.as_ref().is_none_or(|f| f.as_str() == d.filiere))
            .map(|d| pb::Disease {
                orpha_code: d.orpha_code.to_owned(),
                name: d.name.to_owned(),
                icd10: d.icd10.to_owned(),
                filiere: d.filiere.to_owned(),
                confirmed: d.confirmed,
                source: source.to_owned(),
            })
            .collect();
        Ok(Response::new(pb::ListDiseasesResponse { diseases }))
    }

    async fn create_framework(
        &self,
        req: Request<pb::CreateFrameworkRequest>,
    ) -> Result<Response<pb::Framework>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let key = v.check("idempotency_key", c::idempotency_key(&r.idempotency_key));
        let pathway = v.check("pathway", enum_in!(r.pathway, pb::Pathway, "PATHWAY_", m::Pathway));
        if pathway.is_some_and(|p| !p.needs_framework()) {
            v.push(
                "pathway",
                "NOT_APPLICABLE",
                "frameworks exist for AAP_PRE, AAP_POST, CPC, ATU_COHORT, RTU and DIRECT only",
            );
        }
        let drug_atc = v.check("drug_atc", c::atc_known(&r.drug_atc));
        let indication = v.check("indication", codes::bounded_text(&r.indication, 500));
        let orpha_codes = Some(c::orpha_list(&mut v, "orpha_codes", &r.orpha_codes));
        let authority = match r.authority.trim() {
            a @ ("ANSM" | "HAS" | "MINISTERS") => Some(a.to_owned()),
            _ => {
                v.push("authority", "UNKNOWN_CODE", "must be ANSM, HAS or MINISTERS");
                None
            }
        };
        let decision_reference = v.check("decision_reference", codes::bounded_text(&r.decision_reference, 200));
        let valid_from = v.check("valid_from", c::date(&r.valid_from));
        let valid_to = v.check("valid_to", c::optional(&r.valid_to, c::date));
        if let (Some(from), Some(Some(to))) = (valid_from, valid_to)
            && to < from
        {
            v.push("valid_to", "BEFORE_START", "must not be before valid_from");
        }
        let status = v.check(
            "status",
            enum_in!(r.status, pb::FrameworkStatus, "FRAMEWORK_STATUS_", m::FrameworkStatus),
        );
        let protocol_type = v.check(
            "protocol_type",
            enum_in!(r.protocol_type, pb::ProtocolType, "PROTOCOL_TYPE_", m::ProtocolType),
        );
        let protocol_version = v.check("protocol_version", c::optional(&r.protocol_version, c::text(50)));
        let follow_up_months = match r.follow_up_months {
            0..=24 => Some(r.follow_up_months.unsigned_abs()),
            _ => {
                v.push("follow_up_months", "OUT_OF_RANGE", "must be between 0 and 24");
                None
            }
        };
        let source = v.check("source", codes::bounded_text(&r.source, 500));
        all_some!(v; key, pathway, drug_atc, indication, orpha_codes, authority, decision_reference, valid_from, valid_to,
            status, protocol_type, protocol_version, follow_up_months, source);
        let framework = m::Framework {
            pathway,
            drug_atc,
            indication,
            orpha_codes,
            authority,
            decision_reference,
            valid_from,
            valid_to,
            status,
            protocol_type,
            protocol_version: protocol_version.unwrap_or_default(),
            follow_up_months,
            source,
            confirmed: r.confirmed,
            suspended_from: None,
            suspended_on: None,
        };
        let ctx = admit(&self.state.store, &req, Target::Unbound)
            .await?
            .context(Some(key));
        self.state
            .write(Command::CreateFramework(framework), ctx, |r| match r {
                Record::Framework(x) => Some(c::framework(x)),
                _ => None,
            })
            .await
    }

    async fn get_framework(&self, req: Request<pb::GetFrameworkRequest>) -> Result<Response<pb::Framework>, Status> {
        let id: RecordId =
            c::id(&req.get_ref().id).map_err(|e| error::invalid_field("id", e.reason, &e.description))?;
        let x = self
            .state
            .store
            .require::<m::Framework>(id.as_str())
            .await
            .map_err(error::store)?;
        Ok(Response::new(c::framework(&x)))
    }

    async fn transition_framework(
        &self,
        req: Request<pb::TransitionFrameworkRequest>,
    ) -> Result<Response<pb::Framework>, Status> {
        use pb::transition_framework_request::Transition as T;
        let r = req.get_ref();
        let mut v = Violations::new();
        let id = v.check("id", c::id(&r.id));
        let expected = v.check("expected_version", c::version(r.expected_version));
        let step = |v: &mut Violations, field: &str, date: &str| v.check(&format!("{field}.date"), c::date(date));
        let transition = match &r.transition {
            None => {
                v.push("transition", "REQUIRED", "one transition is required");
                None
            }
            Some(T::StartReview(s)) => step(&mut v, "start_review", &s.date).map(|date| FT::StartReview { date }),
            Some(T::Refuse(s)) => step(&mut v, "refuse", &s.date).map(|date| FT::Refuse { date }),
            Some(T::SubmitRenewal(s)) => step(&mut v, "submit_renewal", &s.date).map(|date| FT::SubmitRenewal { date }),
            Some(T::Suspend(s)) => step(&mut v, "suspend", &s.date).map(|date| FT::Suspend { date }),
            Some(T::Reinstate(s)) => step(&mut v, "reinstate", &s.date).map(|date| FT::Reinstate { date }),
            Some(T::Withdraw(s)) => step(&mut v, "withdraw", &s.date).map(|date| FT::Withdraw { date }),
            Some(T::End(s)) => step(&mut v, "end", &s.date).map(|date| FT::End { date }),
            Some(T::Grant(g)) => {
                let date = step(&mut v, "grant", &g.date);
                let from = v.check("grant.valid_from", c::date(&g.valid_from));
                let to = v.check("grant.valid_to", c::optional(&g.valid_to, c::date));
                match (date, from, to) {
                    (Some(date), Some(valid_from), Some(valid_to)) => Some(FT::Grant {
                        date,
                        valid_from,
                        valid_to,
                    }),
                    _ => None,
                }
            }
            Some(T::Renew(g)) => {
                let date = step(&mut v, "renew", &g.date);
                let to = v.check("renew.valid_to", c::optional(&g.valid_to, c::date));
                match (date, to) {
                    (Some(date), Some(valid_to)) => Some(FT::Renew { date, valid_to }),
                    _ => None,
                }
            }
        };
        all_some!(v; id, expected, transition);
        let cmd = Command::TransitionFramework {
            id,
            expected_version: expected,
            transition,
        };
        let ctx = admit(&self.state.store, &req, Target::Unbound).await?.context(None);
        self.state
            .write(cmd, ctx, |r| match r {
                Record::Framework(x) => Some(c::framework(x)),
                _ => None,
            })
            .await
    }

    async fn list_frameworks(
        &self,
        req: Request<pb::ListFrameworksRequest>,
    ) -> Result<Response<pb::ListFrameworksResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let filter = FrameworkFilter {
            pathway: v
                .check("pathway", enum_in_opt!(r.pathway, pb::Pathway, "PATHWAY_", m::Pathway))
                .flatten(),
            drug_atc: v.check("drug_atc", c::optional(&r.drug_atc, c::atc_known)).flatten(),
        };
        v.into_result().map_err(error::domain)?;
        let all = self.state.store.list_frameworks(&filter).await.map_err(error::store)?;
        Ok(Response::new(pb::ListFrameworksResponse {
            frameworks: all.iter().map(c::framework).collect(),
        }))
    }
}
