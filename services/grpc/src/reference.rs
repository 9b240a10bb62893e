//! `observatory.v1.ReferenceService`: centres, prescribers, shipped drugs and diseases,
//! frameworks.

use observatory_app::reference as ops;
use observatory_domain::{
    Violations, codes,
    corrections::{CentreUpdate, FrameworkTransition as FT, PrescriberUpdate},
    model::{self as m, RecordId},
    registration as rules,
};
use observatory_proto::v1::{self as pb, reference_service_server::ReferenceService};
use observatory_store::{CentreFilter, FrameworkFilter};
use tonic::{Request, Response, Status};

use crate::convert::{self as c, all_some, enum_in, enum_in_opt};
use crate::{ApiState, error, guard};

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
        let (key, centre) = parse_centre(req.get_ref())?;
        let call = guard::call(&req, "CreateCentre")?;
        let x = ops::create_centre(&self.state.app, &call, Some(key), centre)
            .await
            .map_err(error::app)?;
        Ok(Response::new(c::centre(&x)))
    }

    async fn get_centre(&self, req: Request<pb::GetCentreRequest>) -> Result<Response<pb::Centre>, Status> {
        let finess =
            c::finess(&req.get_ref().finess).map_err(|e| error::invalid_field("finess", e.reason, &e.description))?;
        let call = guard::call(&req, "GetCentre")?;
        let x = ops::get_centre(&self.state.app, &call, &finess)
            .await
            .map_err(error::app)?;
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
        let call = guard::call(&req, "ListCentres")?;
        let p = ops::list_centres(&self.state.app, &call, &filter, &page)
            .await
            .map_err(error::app)?;
        Ok(Response::new(pb::ListCentresResponse {
            centres: p.items.iter().map(c::centre).collect(),
            next_page_token: p.next_page_token.unwrap_or_default(),
        }))
    }

    async fn create_prescriber(
        &self,
        req: Request<pb::CreatePrescriberRequest>,
    ) -> Result<Response<pb::Prescriber>, Status> {
        let (key, prescriber) = parse_prescriber(req.get_ref())?;
        let call = guard::call(&req, "CreatePrescriber")?;
        let x = ops::create_prescriber(&self.state.app, &call, Some(key), prescriber)
            .await
            .map_err(error::app)?;
        Ok(Response::new(c::prescriber(&x)))
    }

    async fn get_prescriber(&self, req: Request<pb::GetPrescriberRequest>) -> Result<Response<pb::Prescriber>, Status> {
        let rpps = c::rpps(&req.get_ref().rpps).map_err(|e| error::invalid_field("rpps", e.reason, &e.description))?;
        let call = guard::call(&req, "GetPrescriber")?;
        let x = ops::get_prescriber(&self.state.app, &call, &rpps)
            .await
            .map_err(error::app)?;
        Ok(Response::new(c::prescriber(&x)))
    }

    async fn list_prescribers(
        &self,
        req: Request<pb::ListPrescribersRequest>,
    ) -> Result<Response<pb::ListPrescribersResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let page = c::page(&mut v, r.page.as_ref());
        let centre = v
            .check("centre_finess", c::optional(&r.centre_finess, c::finess))
            .flatten();
        v.into_result().map_err(error::domain)?;
        let call = guard::call(&req, "ListPrescribers")?;
        let p = ops::list_prescribers(&self.state.app, &call, centre.as_ref(), &page)
            .await
            .map_err(error::app)?;
        Ok(Response::new(pb::ListPrescribersResponse {
            prescribers: p.items.iter().map(c::prescriber).collect(),
            next_page_token: p.next_page_token.unwrap_or_default(),
        }))
    }

    async fn update_centre(&self, req: Request<pb::UpdateCentreRequest>) -> Result<Response<pb::Centre>, Status> {
        let (finess, expected, update, reason) = parse_centre_update(req.get_ref())?;
        let call = guard::call(&req, "UpdateCentre")?;
        let x = ops::update_centre(&self.state.app, &call, finess, expected, update, reason)
            .await
            .map_err(error::app)?;
        Ok(Response::new(c::centre(&x)))
    }

    async fn update_prescriber(
        &self,
        req: Request<pb::UpdatePrescriberRequest>,
    ) -> Result<Response<pb::Prescriber>, Status> {
        let (rpps, expected, update, reason) = parse_prescriber_update(req.get_ref())?;
        let call = guard::call(&req, "UpdatePrescriber")?;
        let x = ops::update_prescriber(&self.state.app, &call, rpps, expected, update, reason)
            .await
            .map_err(error::app)?;
        Ok(Response::new(c::prescriber(&x)))
    }

    async fn list_drugs(&self, req: Request<pb::ListDrugsRequest>) -> Result<Response<pb::ListDrugsResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let page = c::page(&mut v, r.page.as_ref());
        v.into_result().map_err(error::domain)?;
        let call = guard::call(&req, "ListDrugs")?;
        let found = ops::list_drugs(&self.state.app, &call, &r.atc_prefix, r.include_retired, &page)
            .await
            .map_err(error::app)?;
        let drugs = found
            .items
            .into_iter()
            .map(|(atc, d)| pb::Drug {
                atc,
                inn: d.name,
                brand: d.brand,
                cis: d.cis,
                confirmed: d.confirmed,
                source: found.source.clone(),
                retired: d.retired,
                followed: d.followed,
                single_administration: d.single_administration,
            })
            .collect();
        Ok(Response::new(pb::ListDrugsResponse {
            drugs,
            next_page_token: found.next_page_token.unwrap_or_default(),
        }))
    }

    async fn list_diseases(
        &self,
        req: Request<pb::ListDiseasesRequest>,
    ) -> Result<Response<pb::ListDiseasesResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let filiere = v.check("filiere", c::optional(&r.filiere, c::filiere));
        let page = c::page(&mut v, r.page.as_ref());
        v.into_result().map_err(error::domain)?;
        let call = guard::call(&req, "ListDiseases")?;
        let found = ops::list_diseases(
            &self.state.app,
            &call,
            filiere.flatten().as_ref(),
            r.include_retired,
            &page,
        )
        .await
        .map_err(error::app)?;
        let diseases = found
            .items
            .into_iter()
            .map(|(orpha_code, d)| pb::Disease {
                orpha_code,
                icd10: d.icd10.first().map(|m| m.code.clone()).unwrap_or_default(),
                name: d.name,
                filiere: d.filiere.unwrap_or_default(),
                confirmed: d.confirmed,
                source: found.source.clone(),
                retired: d.retired,
                synonyms: d.synonyms,
                icd10_mappings: d
                    .icd10
                    .into_iter()
                    .map(|m| pb::Icd10Mapping {
                        code: m.code,
                        relation: m.relation,
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::ListDiseasesResponse {
            diseases,
            next_page_token: found.next_page_token.unwrap_or_default(),
        }))
    }

    async fn list_reference_releases(
        &self,
        req: Request<pb::ListReferenceReleasesRequest>,
    ) -> Result<Response<pb::ListReferenceReleasesResponse>, Status> {
        let call = guard::call(&req, "ListReferenceReleases")?;
        let releases = ops::list_releases(&self.state.app, &call).await.map_err(error::app)?;
        let in_force = observatory_domain::catalogue::in_force_for(&releases);
        let releases = releases
            .iter()
            .map(|r| pb::ReferenceRelease {
                seq: r.seq,
                source: r.source.code().to_owned(),
                version: r.version.clone(),
                release_date: r.release_date.map(|d| d.to_string()).unwrap_or_default(),
                sha256: r.sha256.clone(),
                files: r
                    .files
                    .iter()
                    .map(|f| pb::ReferenceFile {
                        name: f.name.clone(),
                        sha256: f.sha256.clone(),
                        bytes: f.bytes,
                    })
                    .collect(),
                counts: r.counts.iter().map(|(k, n)| (k.clone(), *n)).collect(),
                imported_at: Some(c::ts(r.imported_at)),
                imported_by: r.imported_by.clone(),
                in_force_for: in_force
                    .get(&r.seq)
                    .into_iter()
                    .flatten()
                    .map(|k| k.code().to_owned())
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::ListReferenceReleasesResponse { releases }))
    }

    async fn create_framework(
        &self,
        req: Request<pb::CreateFrameworkRequest>,
    ) -> Result<Response<pb::Framework>, Status> {
        let (key, framework) = parse_framework(req.get_ref())?;
        let call = guard::call(&req, "CreateFramework")?;
        let x = ops::create_framework(&self.state.app, &call, Some(key), framework)
            .await
            .map_err(error::app)?;
        Ok(Response::new(c::framework(&x)))
    }

    async fn get_framework(&self, req: Request<pb::GetFrameworkRequest>) -> Result<Response<pb::Framework>, Status> {
        let id: RecordId =
            c::id(&req.get_ref().id).map_err(|e| error::invalid_field("id", e.reason, &e.description))?;
        let call = guard::call(&req, "GetFramework")?;
        let x = ops::get_framework(&self.state.app, &call, &id)
            .await
            .map_err(error::app)?;
        Ok(Response::new(c::framework(&x)))
    }

    async fn transition_framework(
        &self,
        req: Request<pb::TransitionFrameworkRequest>,
    ) -> Result<Response<pb::Framework>, Status> {
        let (id, expected, transition) = parse_framework_transition(req.get_ref())?;
        let call = guard::call(&req, "TransitionFramework")?;
        let x = ops::transition_framework(&self.state.app, &call, id, expected, transition)
            .await
            .map_err(error::app)?;
        Ok(Response::new(c::framework(&x)))
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
            drug_atc: v.check("drug_atc", c::optional(&r.drug_atc, c::atc)).flatten(),
        };
        v.into_result().map_err(error::domain)?;
        let call = guard::call(&req, "ListFrameworks")?;
        let all = ops::list_frameworks(&self.state.app, &call, &filter)
            .await
            .map_err(error::app)?;
        Ok(Response::new(pb::ListFrameworksResponse {
            frameworks: all.iter().map(c::framework).collect(),
        }))
    }
}

/// A centre's correction: its FINESS, the version it is based on, the fields given, the reason.
pub fn parse_centre_update(r: &pb::UpdateCentreRequest) -> Result<(codes::Finess, i64, CentreUpdate, String), Status> {
    let mut v = Violations::new();
    let finess = v.check("finess", c::finess(&r.finess));
    let expected = v.check("expected_version", c::version(r.expected_version));
    let reason = v.check("reason", c::text(500)(&r.reason));
    let name = match &r.name {
        None => Some(None),
        Some(n) => v.check("name", codes::bounded_text(n, 200)).map(Some),
    };
    let centre_type = match r.r#type {
        None => Some(None),
        Some(t) => v
            .check("type", enum_in!(t, pb::CentreType, "CENTRE_TYPE_", m::CentreType))
            .map(Some),
    };
    let region = match &r.region_code {
        None => Some(None),
        Some(raw) => v.check("region_code", c::region(raw)).map(Some),
    };
    let filieres = match &r.filieres {
        None => Some(None),
        Some(list) => c::filiere_list(&mut v, "filieres.filieres", &list.filieres).map(Some),
    };
    all_some!(v; finess, expected, reason, name, centre_type, region, filieres);
    Ok((
        finess,
        expected,
        CentreUpdate {
            name,
            centre_type,
            region,
            filieres,
        },
        reason,
    ))
}

/// A prescriber's correction or move.
pub fn parse_prescriber_update(
    r: &pb::UpdatePrescriberRequest,
) -> Result<(codes::Rpps, i64, PrescriberUpdate, String), Status> {
    let mut v = Violations::new();
    let rpps = v.check("rpps", c::rpps(&r.rpps));
    let expected = v.check("expected_version", c::version(r.expected_version));
    let reason = v.check("reason", c::text(500)(&r.reason));
    let specialty = match &r.specialty {
        None => Some(None),
        Some(s) => v.check("specialty", codes::bounded_text(s, 100)).map(Some),
    };
    let centre_finess = match &r.centre_finess {
        None => Some(None),
        Some(f) => v.check("centre_finess", c::finess(f)).map(Some),
    };
    all_some!(v; rpps, expected, reason, specialty, centre_finess);
    Ok((
        rpps,
        expected,
        PrescriberUpdate {
            specialty,
            centre_finess,
        },
        reason,
    ))
}

/// A centre as declared.
pub fn parse_centre(r: &pb::CreateCentreRequest) -> Result<(String, m::Centre), Status> {
    let mut v = Violations::new();
    let key = v.check("idempotency_key", c::idempotency_key(&r.idempotency_key));
    let finess = v.check("finess", c::finess(&r.finess));
    let name = v.check("name", codes::bounded_text(&r.name, 200));
    let centre_type = v.check(
        "type",
        enum_in!(r.r#type, pb::CentreType, "CENTRE_TYPE_", m::CentreType),
    );
    let region = v.check("region_code", c::region(&r.region_code));
    let filieres = c::filiere_list(&mut v, "filieres", &r.filieres);
    all_some!(v; key, finess, name, centre_type, region, filieres);
    Ok((
        key,
        m::Centre {
            finess,
            name,
            centre_type,
            region,
            filieres,
        },
    ))
}

/// A prescriber as declared.
pub fn parse_prescriber(r: &pb::CreatePrescriberRequest) -> Result<(String, m::Prescriber), Status> {
    let mut v = Violations::new();
    let key = v.check("idempotency_key", c::idempotency_key(&r.idempotency_key));
    let rpps = v.check("rpps", c::rpps(&r.rpps));
    let specialty = v.check("specialty", codes::bounded_text(&r.specialty, 100));
    let centre_finess = v.check("centre_finess", c::finess(&r.centre_finess));
    all_some!(v; key, rpps, specialty, centre_finess);
    Ok((
        key,
        m::Prescriber {
            rpps,
            specialty,
            centre_finess,
        },
    ))
}

/// A framework as declared, its rules checked (the operation checks them again).
pub fn parse_framework(r: &pb::CreateFrameworkRequest) -> Result<(String, m::Framework), Status> {
    let mut v = Violations::new();
    let key = v.check("idempotency_key", c::idempotency_key(&r.idempotency_key));
    let pathway = v.check("pathway", enum_in!(r.pathway, pb::Pathway, "PATHWAY_", m::Pathway));
    let drug_atc = v.check("drug_atc", c::atc(&r.drug_atc));
    let indication = v.check("indication", codes::bounded_text(&r.indication, 500));
    let orpha_codes = Some(c::orpha_list(&mut v, "orpha_codes", &r.orpha_codes));
    let authority = Some(r.authority.trim().to_owned());
    let decision_reference = v.check("decision_reference", codes::bounded_text(&r.decision_reference, 200));
    let valid_from = v.check("valid_from", c::date(&r.valid_from));
    let valid_to = v.check("valid_to", c::optional(&r.valid_to, c::date));
    let status = v.check(
        "status",
        enum_in!(r.status, pb::FrameworkStatus, "FRAMEWORK_STATUS_", m::FrameworkStatus),
    );
    let protocol_type = v.check(
        "protocol_type",
        enum_in!(r.protocol_type, pb::ProtocolType, "PROTOCOL_TYPE_", m::ProtocolType),
    );
    let protocol_version = v.check("protocol_version", c::optional(&r.protocol_version, c::text(50)));
    let follow_up_months = match u32::try_from(r.follow_up_months) {
        Ok(months) => Some(months),
        Err(_) => {
            v.push("follow_up_months", "OUT_OF_RANGE", "must be between 0 and 24");
            None
        }
    };
    let source = v.check("source", codes::bounded_text(&r.source, 500));
    let synthesis_months = synthesis_months(&mut v, "synthesis_months", r.synthesis_months);
    all_some!(v; key, pathway, drug_atc, indication, orpha_codes, authority, decision_reference, valid_from, valid_to,
        status, protocol_type, protocol_version, follow_up_months, source, synthesis_months);
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
        requires_national_rcp: r.requires_national_rcp,
        synthesis_months,
        synthesis_from: None,
        suspended_from: None,
        suspended_on: None,
    };
    rules::check_framework(&framework).map_err(error::domain)?;
    Ok((key, framework))
}

/// Months between two synthesis reports: 0 (none set) to 36.
fn synthesis_months(v: &mut Violations, field: &str, months: i32) -> Option<u32> {
    match u32::try_from(months) {
        Ok(m) if m <= observatory_domain::corrections::MAX_SYNTHESIS_MONTHS => Some(m),
        _ => {
            v.push(
                field,
                "OUT_OF_RANGE",
                "must be between 0 (no periodic synthesis) and 36",
            );
            None
        }
    }
}

/// A step of a framework's lifecycle.
pub fn parse_framework_transition(r: &pb::TransitionFrameworkRequest) -> Result<(RecordId, i64, FT), Status> {
    use pb::transition_framework_request::Transition as T;
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
        Some(T::AmendProtocol(a)) => {
            let date = step(&mut v, "amend_protocol", &a.date);
            let version = v.check("amend_protocol.protocol_version", c::text(50)(&a.protocol_version));
            let months = synthesis_months(&mut v, "amend_protocol.synthesis_months", a.synthesis_months);
            match (date, version, months) {
                (Some(date), Some(protocol_version), Some(synthesis_months)) => Some(FT::AmendProtocol {
                    date,
                    protocol_version,
                    synthesis_months,
                }),
                _ => None,
            }
        }
    };
    all_some!(v; id, expected, transition);
    Ok((id, expected, transition))
}
