//! `observatory.v1.RegistryService`: cohorts, patients, episodes, authorisations, follow-ups,
//! adverse events and history.

use observatory_domain::{
    Violations, codes,
    corrections::{AdverseEventUpdate, CohortTransition, PatientUpdate},
    lifecycle::{AuthorisationRequest, AuthorisationTransition as AT, EpisodeDeclaration, EpisodeTransition as ET},
    model::{self as m, Pseudonym, RecordId, YearMonth},
    pseudonym::{self, Identity},
};
use observatory_proto::v1::{self as pb, registry_service_server::RegistryService};
use observatory_store::{CohortFilter, Command, EpisodeFilter, NewCohort, Record, Stored, Versioned};
use tonic::{Request, Response, Status};

use crate::convert::{self as c, all_some, enum_in, enum_in_opt};
use crate::guard::{Target, admit};
use crate::{ApiState, error};
use observatory_store::audit::AuditTarget;

/// Wire names of cohort transitions (`COHORT_TRANSITION_CLOSE`...), for `enum_in!`.
#[derive(Debug, Clone, Copy)]
enum CohortTransitionCode {
    Close,
    Reopen,
}

impl CohortTransitionCode {
    fn from_code(code: &str) -> Option<Self> {
        match code {
            "CLOSE" => Some(Self::Close),
            "REOPEN" => Some(Self::Reopen),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RegistryApi {
    state: ApiState,
}

impl RegistryApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }

    /// The context of a write on `target`, once the caller is admitted to it.
    async fn write_context<T>(
        &self,
        req: &Request<T>,
        target: Target<'_>,
        idempotency_key: Option<String>,
    ) -> Result<observatory_store::WriteContext, Status> {
        Ok(admit(&self.state.store, req, target)
            .await?
            .context(req, idempotency_key))
    }

    /// Reads one record; a patient-level one is recorded in the audit trail as `action`.
    async fn get<T: Stored, P>(
        &self,
        req: &Request<pb::GetRequest>,
        action: &str,
        out: fn(&Versioned<T>) -> P,
    ) -> Result<Response<P>, Status> {
        let id = c::id(&req.get_ref().id).map_err(|e| error::invalid_field("id", e.reason, &e.description))?;
        let target = match T::KIND {
            m::RecordKind::Cohort => Target::CohortEntry(&id),
            kind => Target::Record(kind, &id),
        };
        let admitted = admit(&self.state.store, req, target).await?;
        let x = self.state.store.require::<T>(id.as_str()).await.map_err(error::store)?;
        if T::KIND.is_patient_level() {
            admitted
                .audit_read(&self.state.store, req, action, vec![AuditTarget::read(T::KIND, &x)])
                .await?;
        }
        Ok(Response::new(out(&x)))
    }

    /// The follow-ups or adverse events of an episode, recorded in the audit trail as `action`.
    async fn list_by_episode<T: Stored>(
        &self,
        req: &Request<pb::ListByEpisodeRequest>,
        action: &str,
    ) -> Result<observatory_store::Page<Versioned<T>>, Status> {
        let (episode, page) = by_episode(req.get_ref())?;
        let store = &self.state.store;
        let admitted = admit(store, req, Target::Record(m::RecordKind::Episode, &episode)).await?;
        store
            .require::<m::Episode>(episode.as_str())
            .await
            .map_err(error::store)?;
        let p = store
            .list_by_episode::<T>(&episode, &page)
            .await
            .map_err(error::store)?;
        let mut targets = vec![AuditTarget::object(m::RecordKind::Episode.code(), episode.as_str())];
        targets.extend(p.items.iter().map(|x| AuditTarget::read(T::KIND, x)));
        admitted.audit_read(store, req, action, targets).await?;
        Ok(p)
    }
}

/// Episode id and page of a per-episode list.
fn by_episode(r: &pb::ListByEpisodeRequest) -> Result<(RecordId, observatory_store::PageRequest), Status> {
    let mut v = Violations::new();
    let page = c::page(&mut v, r.page.as_ref());
    let episode = v.check("episode_id", c::id(&r.episode_id));
    all_some!(v; episode);
    Ok((episode, page))
}

fn field_err(field: &str, e: observatory_domain::CodeError) -> Status {
    error::invalid_field(field, e.reason, &e.description)
}

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    async fn create_cohort(&self, req: Request<pb::CreateCohortRequest>) -> Result<Response<pb::Cohort>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let key = v.check("idempotency_key", c::idempotency_key(&r.idempotency_key));
        let name = v.check("name", codes::bounded_text(&r.name, 200));
        let filiere = v.check("filiere", c::filiere(&r.filiere));
        let pathway = v.check("pathway", enum_in!(r.pathway, pb::Pathway, "PATHWAY_", m::Pathway));
        let drug_atc = v.check("drug_atc", c::atc_known(&r.drug_atc));
        let orpha_codes = Some(c::orpha_list(&mut v, "orpha_codes", &r.orpha_codes));
        let framework_id = v.check("framework_id", c::optional(&r.framework_id, c::id));
        let follow_up_months = match r.follow_up_months {
            0 => Some(None),
            1..=24 => Some(Some(r.follow_up_months.unsigned_abs())),
            _ => {
                v.push(
                    "follow_up_months",
                    "OUT_OF_RANGE",
                    "must be between 1 and 24 (0 for the framework's schedule)",
                );
                None
            }
        };
        all_some!(v; key, name, filiere, pathway, drug_atc, orpha_codes, framework_id, follow_up_months);
        let ctx = self.write_context(&req, Target::NewCohort(&filiere), Some(key)).await?;
        let cmd = Command::CreateCohort(NewCohort {
            name,
            filiere,
            pathway,
            drug_atc,
            orpha_codes,
            framework_id,
            follow_up_months,
        });
        self.state
            .write(cmd, ctx, |r| match r {
                Record::Cohort(x) => Some(c::cohort(x)),
                _ => None,
            })
            .await
    }

    async fn get_cohort(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Cohort>, Status> {
        self.get::<m::Cohort, _>(&req, "GetCohort", c::cohort).await
    }

    async fn list_cohorts(
        &self,
        req: Request<pb::ListCohortsRequest>,
    ) -> Result<Response<pb::ListCohortsResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let page = c::page(&mut v, r.page.as_ref());
        let filter = CohortFilter {
            pathway: v
                .check("pathway", enum_in_opt!(r.pathway, pb::Pathway, "PATHWAY_", m::Pathway))
                .flatten(),
            drug_atc: v.check("drug_atc", c::optional(&r.drug_atc, c::atc_known)).flatten(),
            filiere: v.check("filiere", c::optional(&r.filiere, c::filiere)).flatten(),
        };
        v.into_result().map_err(error::domain)?;
        let admitted = admit(&self.state.store, &req, Target::List).await?;
        let p = self
            .state
            .store
            .list_cohorts(&filter, Some(admitted.within()), &page)
            .await
            .map_err(error::store)?;
        Ok(Response::new(pb::ListCohortsResponse {
            cohorts: p.items.iter().map(c::cohort).collect(),
            next_page_token: p.next_page_token.unwrap_or_default(),
        }))
    }

    async fn register_patient(
        &self,
        req: Request<pb::RegisterPatientRequest>,
    ) -> Result<Response<pb::Patient>, Status> {
        use pb::register_patient_request::Subject;
        let r = req.get_ref();
        let mut v = Violations::new();
        let key = v.check("idempotency_key", c::idempotency_key(&r.idempotency_key));
        let sex_given = v.check("sex", enum_in_opt!(r.sex, pb::Sex, "SEX_", m::Sex)).flatten();
        let ym_given = v
            .check("birth_year_month", c::optional(&r.birth_year_month, YearMonth::parse))
            .flatten();
        let (pseudonym, sex, birth_year_month) = match &r.subject {
            None => {
                v.push("subject", "REQUIRED", "either idmr or identity is required");
                (None, None, None)
            }
            Some(Subject::Idmr(raw)) => {
                let idmr = v.check("idmr", codes::IdMr::parse(raw));
                if sex_given.is_none() {
                    v.push("sex", "REQUIRED", "is required when registering with an IdMR");
                }
                if ym_given.is_none() {
                    v.push(
                        "birth_year_month",
                        "REQUIRED",
                        "is required when registering with an IdMR",
                    );
                }
                (idmr.map(|i| Pseudonym::idmr(&i)), sex_given, ym_given)
            }
            Some(Subject::Identity(id)) => {
                // Descriptions never repeat what was sent: these are identity fields.
                let last = v.check("identity.last_name", codes::bounded_text(&id.last_name, 100));
                let first = v.check("identity.first_name", codes::bounded_text(&id.first_name, 100));
                let birth = v.check("identity.birth_date", c::date(&id.birth_date));
                let sex = v.check("identity.sex", enum_in!(id.sex, pb::Sex, "SEX_", m::Sex));
                if let (Some(s), Some(given)) = (sex, sex_given)
                    && s != given
                {
                    v.push("sex", "MISMATCH", "must agree with identity.sex");
                }
                if let (Some(b), Some(given)) = (birth, ym_given)
                    && YearMonth::of(b) != given
                {
                    v.push("birth_year_month", "MISMATCH", "must agree with identity.birth_date");
                }
                match (last, first, birth, sex) {
                    (Some(last_name), Some(first_name), Some(birth_date), Some(sex)) => {
                        let identity = Identity {
                            last_name,
                            first_name,
                            birth_date,
                            sex,
                        };
                        let (last_ok, first_ok) = identity.names_are_usable();
                        if !last_ok {
                            v.push("identity.last_name", "BAD_FORMAT", "must contain letters");
                        }
                        if !first_ok {
                            v.push("identity.first_name", "BAD_FORMAT", "must contain letters");
                        }
                        let p = pseudonym::pseudonymise(&self.state.pseudonym_key, &identity);
                        (Some(p), Some(sex), Some(YearMonth::of(birth_date)))
                    }
                    _ => (None, None, None),
                }
            }
        };
        let region = v.check("region_code", c::optional(&r.region_code, c::region));
        let diagnoses = Some(c::diagnoses(&mut v, &r.diagnoses));
        all_some!(v; key, pseudonym, sex, birth_year_month, region, diagnoses);
        let ctx = self.write_context(&req, Target::Unbound, Some(key)).await?;
        let patient = m::Patient {
            pseudonym,
            sex,
            birth_year_month,
            region,
            vital_status: m::VitalStatus::Alive,
            objects_to_reuse: r.objects_to_reuse,
            diagnoses,
        };
        self.state
            .write(Command::RegisterPatient(patient), ctx, |r| match r {
                Record::Patient(x) => Some(c::patient(x)),
                _ => None,
            })
            .await
    }

    async fn get_patient(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Patient>, Status> {
        self.get::<m::Patient, _>(&req, "GetPatient", c::patient).await
    }

    async fn declare_episode(
        &self,
        req: Request<pb::DeclareEpisodeRequest>,
    ) -> Result<Response<pb::DeclareEpisodeResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let key = v.check("idempotency_key", c::idempotency_key(&r.idempotency_key));
        let patient_id = v.check("patient_id", c::id(&r.patient_id));
        let cohort_id = v.check("cohort_id", c::id(&r.cohort_id));
        let pathway = v.check("pathway", enum_in!(r.pathway, pb::Pathway, "PATHWAY_", m::Pathway));
        let indication = v.check(
            "indication_orpha_code",
            observatory_domain::codes::OrphaCode::parse(&r.indication_orpha_code),
        );
        let prescriber = v.check("prescriber_rpps", c::rpps(&r.prescriber_rpps));
        let centre_finess = v.check("centre_finess", c::optional(&r.centre_finess, c::finess));
        let rcp = c::rcp(&mut v, "rcp", r.rcp.as_ref());
        let off_label = c::off_label(&mut v, "off_label", r.off_label.as_ref());
        let dosage = c::dosage(&mut v, "dosage", r.dosage.as_ref());
        let request_date = v.check("request_date", c::date(&r.request_date));
        let authorisation = match &r.authorisation {
            None => Some(None),
            Some(a) => {
                let submitted = v.check("authorisation.submitted_date", c::date(&a.submitted_date));
                let reference = v.check("authorisation.reference", c::optional(&a.reference, c::text(100)));
                match (submitted, reference) {
                    (Some(submitted_date), Some(reference)) => Some(Some(AuthorisationRequest {
                        submitted_date,
                        reference,
                    })),
                    _ => None,
                }
            }
        };
        let previous_episode = match c::opt_str(&r.previous_episode_id) {
            None => {
                if r.previous_episode_version != 0 {
                    v.push(
                        "previous_episode_version",
                        "NOT_APPLICABLE",
                        "is only taken with previous_episode_id",
                    );
                }
                Some(None)
            }
            Some(raw) => {
                let id = v.check("previous_episode_id", c::id(raw));
                let version = v.check("previous_episode_version", c::version(r.previous_episode_version));
                match (id, version) {
                    (Some(id), Some(version)) => Some(Some((id, version))),
                    _ => None,
                }
            }
        };
        all_some!(v; key, patient_id, cohort_id, pathway, indication, prescriber, centre_finess, request_date, authorisation, previous_episode);
        let target = Target::NewEpisode {
            patient: &patient_id,
            centre: centre_finess.as_ref(),
            prescriber: &prescriber,
            cohort: &cohort_id,
            previous: previous_episode.as_ref().map(|(id, _)| id),
        };
        let ctx = self.write_context(&req, target, Some(key)).await?;
        let declaration = EpisodeDeclaration {
            patient_id,
            cohort_id,
            pathway,
            indication,
            prescriber,
            centre_finess,
            rcp,
            off_label,
            dosage,
            request_date,
            authorisation,
            previous_episode,
        };
        let previous_id = declaration.previous_episode.as_ref().map(|(id, _)| id.to_string());
        let w = self
            .state
            .store
            .execute(Command::DeclareEpisode(declaration), ctx)
            .await
            .map_err(error::store)?;
        let mut out = pb::DeclareEpisodeResponse::default();
        for rec in &w.records {
            match rec {
                Record::Episode(x) if Some(&x.meta.id) == previous_id.as_ref() => {
                    out.previous_episode = Some(c::episode(x))
                }
                Record::Episode(x) => out.episode = Some(c::episode(x)),
                Record::Authorisation(x) => out.authorisation = Some(c::authorisation(x)),
                _ => {}
            }
        }
        Ok(Response::new(out))
    }

    async fn get_episode(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Episode>, Status> {
        self.get::<m::Episode, _>(&req, "GetEpisode", c::episode).await
    }

    async fn list_episodes(
        &self,
        req: Request<pb::ListEpisodesRequest>,
    ) -> Result<Response<pb::ListEpisodesResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let page = c::page(&mut v, r.page.as_ref());
        let (from, to) = match &r.request_date {
            None => (None, None),
            Some(range) => (
                v.check("request_date.from", c::optional(&range.from, c::date))
                    .flatten(),
                v.check("request_date.to", c::optional(&range.to, c::date)).flatten(),
            ),
        };
        if let (Some(f), Some(t)) = (from, to)
            && t < f
        {
            v.push(
                "request_date.to",
                "BEFORE_START",
                "must not be before request_date.from",
            );
        }
        let filter = EpisodeFilter {
            cohort_id: v.check("cohort_id", c::optional(&r.cohort_id, c::id)).flatten(),
            patient_id: v.check("patient_id", c::optional(&r.patient_id, c::id)).flatten(),
            centre: v
                .check("centre_finess", c::optional(&r.centre_finess, c::finess))
                .flatten(),
            pathway: v
                .check("pathway", enum_in_opt!(r.pathway, pb::Pathway, "PATHWAY_", m::Pathway))
                .flatten(),
            drug_atc: v.check("drug_atc", c::optional(&r.drug_atc, c::atc_known)).flatten(),
            orpha_code: v
                .check(
                    "orpha_code",
                    c::optional(&r.orpha_code, observatory_domain::codes::OrphaCode::parse),
                )
                .flatten(),
            status: v
                .check(
                    "status",
                    enum_in_opt!(r.status, pb::EpisodeStatus, "EPISODE_STATUS_", m::EpisodeStatus),
                )
                .flatten(),
            request_from: from,
            request_to: to,
        };
        v.into_result().map_err(error::domain)?;
        let admitted = admit(&self.state.store, &req, Target::List).await?;
        let p = self
            .state
            .store
            .list_episodes(&filter, Some(admitted.within()), &page)
            .await
            .map_err(error::store)?;
        let mut targets: Vec<AuditTarget> = filter
            .patient_id
            .iter()
            .map(|id| AuditTarget::object(m::RecordKind::Patient.code(), id.as_str()))
            .collect();
        targets.extend(p.items.iter().map(|x| AuditTarget::read(m::RecordKind::Episode, x)));
        admitted
            .audit_read(&self.state.store, &req, "ListEpisodes", targets)
            .await?;
        Ok(Response::new(pb::ListEpisodesResponse {
            episodes: p.items.iter().map(c::episode).collect(),
            next_page_token: p.next_page_token.unwrap_or_default(),
        }))
    }

    async fn transition_episode(
        &self,
        req: Request<pb::TransitionEpisodeRequest>,
    ) -> Result<Response<pb::Episode>, Status> {
        use pb::transition_episode_request::Transition as T;
        let r = req.get_ref();
        let mut v = Violations::new();
        let id = v.check("id", c::id(&r.id));
        let expected = v.check("expected_version", c::version(r.expected_version));
        let transition = match &r.transition {
            None => {
                v.push(
                    "transition",
                    "REQUIRED",
                    "one of initiate, stop, transfer, lost_to_follow_up, deceased is required",
                );
                None
            }
            Some(T::Initiate(x)) => {
                let date = v.check(
                    "initiate.first_administration_date",
                    c::date(&x.first_administration_date),
                );
                let dosage = c::dosage(&mut v, "initiate.dosage", x.dosage.as_ref());
                date.map(|date| ET::Initiate { date, dosage })
            }
            Some(T::Stop(x)) => {
                let date = v.check("stop.date", c::date(&x.date));
                let reason = v.check(
                    "stop.reason",
                    enum_in!(x.reason, pb::StopReason, "STOP_REASON_", m::StopReason),
                );
                match (date, reason) {
                    (Some(date), Some(reason)) => Some(ET::Stop { date, reason }),
                    _ => None,
                }
            }
            Some(T::Transfer(x)) => {
                let date = v.check("transfer.date", c::date(&x.date));
                let to = v.check("transfer.to_centre_finess", c::finess(&x.to_centre_finess));
                match (date, to) {
                    (Some(date), Some(to)) => Some(ET::Transfer { date, to }),
                    _ => None,
                }
            }
            Some(T::LostToFollowUp(x)) => v
                .check("lost_to_follow_up.date", c::date(&x.date))
                .map(|date| ET::LostToFollowUp { date }),
            Some(T::Deceased(x)) => v
                .check("deceased.date", c::date(&x.date))
                .map(|date| ET::Deceased { date }),
        };
        all_some!(v; id, expected, transition);
        let ctx = self
            .write_context(&req, Target::Record(m::RecordKind::Episode, &id), None)
            .await?;
        let cmd = Command::TransitionEpisode {
            id,
            expected_version: expected,
            transition,
        };
        self.state
            .write(cmd, ctx, |r| match r {
                Record::Episode(x) => Some(c::episode(x)),
                _ => None,
            })
            .await
    }

    async fn get_authorisation(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Authorisation>, Status> {
        self.get::<m::Authorisation, _>(&req, "GetAuthorisation", c::authorisation)
            .await
    }

    async fn transition_authorisation(
        &self,
        req: Request<pb::TransitionAuthorisationRequest>,
    ) -> Result<Response<pb::Authorisation>, Status> {
        use pb::transition_authorisation_request::{DatedStep, Grant, Transition as T};
        let r = req.get_ref();
        let mut v = Violations::new();
        let id = v.check("id", c::id(&r.id));
        let expected = v.check("expected_version", c::version(r.expected_version));
        let step = |v: &mut Violations, field: &str, s: &DatedStep| v.check(&format!("{field}.date"), c::date(&s.date));
        let grant = |v: &mut Violations, field: &str, g: &Grant| {
            let decision = v.check(&format!("{field}.decision_date"), c::date(&g.decision_date));
            let from = v.check(&format!("{field}.valid_from"), c::date(&g.valid_from));
            let to = v.check(&format!("{field}.valid_to"), c::date(&g.valid_to));
            let reference = v.check(&format!("{field}.reference"), c::optional(&g.reference, c::text(100)));
            match (decision, from, to, reference) {
                (Some(d), Some(f), Some(t), Some(r)) => Some((d, f, t, r)),
                _ => None,
            }
        };
        let transition = match &r.transition {
            None => {
                v.push("transition", "REQUIRED", "one transition is required");
                None
            }
            Some(T::RequestInformation(s)) => {
                step(&mut v, "request_information", s).map(|date| AT::RequestInformation { date })
            }
            Some(T::Resubmit(s)) => step(&mut v, "resubmit", s).map(|date| AT::Resubmit { date }),
            Some(T::Refuse(s)) => step(&mut v, "refuse", s).map(|date| AT::Refuse { date }),
            Some(T::SubmitRenewal(s)) => step(&mut v, "submit_renewal", s).map(|date| AT::SubmitRenewal { date }),
            Some(T::Expire(s)) => step(&mut v, "expire", s).map(|date| AT::Expire { date }),
            Some(T::Suspend(s)) => step(&mut v, "suspend", s).map(|date| AT::Suspend { date }),
            Some(T::Reinstate(s)) => step(&mut v, "reinstate", s).map(|date| AT::Reinstate { date }),
            Some(T::Withdraw(s)) => step(&mut v, "withdraw", s).map(|date| AT::Withdraw { date }),
            Some(T::Grant(g)) => {
                grant(&mut v, "grant", g).map(|(decision_date, valid_from, valid_to, reference)| AT::Grant {
                    decision_date,
                    valid_from,
                    valid_to,
                    reference,
                })
            }
            Some(T::Renew(g)) => {
                grant(&mut v, "renew", g).map(|(decision_date, valid_from, valid_to, reference)| AT::Renew {
                    decision_date,
                    valid_from,
                    valid_to,
                    reference,
                })
            }
        };
        all_some!(v; id, expected, transition);
        let ctx = self
            .write_context(&req, Target::Record(m::RecordKind::Authorisation, &id), None)
            .await?;
        let cmd = Command::TransitionAuthorisation {
            id,
            expected_version: expected,
            transition,
        };
        self.state
            .write(cmd, ctx, |r| match r {
                Record::Authorisation(x) => Some(c::authorisation(x)),
                _ => None,
            })
            .await
    }

    async fn record_follow_up(
        &self,
        req: Request<pb::RecordFollowUpRequest>,
    ) -> Result<Response<pb::FollowUp>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let key = v.check("idempotency_key", c::idempotency_key(&r.idempotency_key));
        let episode_id = v.check("episode_id", c::id(&r.episode_id));
        let visit_date = v.check("visit_date", c::date(&r.visit_date));
        let efficacy = v.check(
            "efficacy",
            enum_in!(
                r.efficacy,
                pb::EfficacyAssessment,
                "EFFICACY_ASSESSMENT_",
                m::EfficacyAssessment
            ),
        );
        let adherence = v.check(
            "adherence",
            enum_in!(r.adherence, pb::Adherence, "ADHERENCE_", m::Adherence),
        );
        let measures = Some(c::measures(&mut v, &r.measures));
        let weight_kg = if r.weight_kg == 0.0 {
            Some(None)
        } else if r.weight_kg.is_finite() && r.weight_kg > 0.0 && r.weight_kg <= 400.0 {
            Some(Some(r.weight_kg))
        } else {
            v.push(
                "weight_kg",
                "OUT_OF_RANGE",
                "must be between 0 and 400 kg (0 when not measured)",
            );
            None
        };
        all_some!(v; key, episode_id, visit_date, efficacy, adherence, measures, weight_kg);
        let ctx = self
            .write_context(&req, Target::Record(m::RecordKind::Episode, &episode_id), Some(key))
            .await?;
        let f = m::FollowUp {
            episode_id,
            visit_date,
            efficacy,
            measures,
            weight_kg,
            adherence,
        };
        self.state
            .write(Command::RecordFollowUp(f), ctx, |r| match r {
                Record::FollowUp(x) => Some(c::follow_up(x)),
                _ => None,
            })
            .await
    }

    async fn record_adverse_event(
        &self,
        req: Request<pb::RecordAdverseEventRequest>,
    ) -> Result<Response<pb::AdverseEvent>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let key = v.check("idempotency_key", c::idempotency_key(&r.idempotency_key));
        let episode_id = v.check("episode_id", c::id(&r.episode_id));
        let onset_date = v.check("onset_date", c::date(&r.onset_date));
        let meddra_pt = v.check("meddra_pt_code", c::meddra(&r.meddra_pt_code));
        let meddra_soc = v.check("meddra_soc_code", c::optional(&r.meddra_soc_code, c::meddra));
        let outcome = v.check(
            "outcome",
            enum_in!(r.outcome, pb::AeOutcome, "AE_OUTCOME_", m::AeOutcome),
        );
        let causality = v.check(
            "causality",
            enum_in!(r.causality, pb::Causality, "CAUSALITY_", m::Causality),
        );
        let pv_declaration_date = v.check("pv_declaration_date", c::optional(&r.pv_declaration_date, c::date));
        let pv_reference = v.check("pv_reference", c::optional(&r.pv_reference, c::text(100)));
        if let (Some(None), Some(Some(_))) = (&pv_declaration_date, &pv_reference) {
            v.push("pv_declaration_date", "REQUIRED", "is required with pv_reference");
        }
        all_some!(v; key, episode_id, onset_date, meddra_pt, meddra_soc, outcome, causality, pv_declaration_date, pv_reference);
        let ctx = self
            .write_context(&req, Target::Record(m::RecordKind::Episode, &episode_id), Some(key))
            .await?;
        let ae = m::AdverseEvent {
            episode_id,
            onset_date,
            meddra_pt,
            meddra_soc,
            serious: r.serious,
            outcome,
            causality,
            pv_declaration_date,
            pv_reference,
        };
        self.state
            .write(Command::RecordAdverseEvent(ae), ctx, |r| match r {
                Record::AdverseEvent(x) => Some(c::adverse_event(x)),
                _ => None,
            })
            .await
    }

    async fn get_follow_up(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::FollowUp>, Status> {
        self.get::<m::FollowUp, _>(&req, "GetFollowUp", c::follow_up).await
    }

    async fn list_follow_ups(
        &self,
        req: Request<pb::ListByEpisodeRequest>,
    ) -> Result<Response<pb::ListFollowUpsResponse>, Status> {
        let p = self.list_by_episode::<m::FollowUp>(&req, "ListFollowUps").await?;
        Ok(Response::new(pb::ListFollowUpsResponse {
            follow_ups: p.items.iter().map(c::follow_up).collect(),
            next_page_token: p.next_page_token.unwrap_or_default(),
        }))
    }

    async fn list_adverse_events(
        &self,
        req: Request<pb::ListByEpisodeRequest>,
    ) -> Result<Response<pb::ListAdverseEventsResponse>, Status> {
        let p = self
            .list_by_episode::<m::AdverseEvent>(&req, "ListAdverseEvents")
            .await?;
        Ok(Response::new(pb::ListAdverseEventsResponse {
            adverse_events: p.items.iter().map(c::adverse_event).collect(),
            next_page_token: p.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_adverse_event(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::AdverseEvent>, Status> {
        self.get::<m::AdverseEvent, _>(&req, "GetAdverseEvent", c::adverse_event)
            .await
    }

    async fn transition_cohort(
        &self,
        req: Request<pb::TransitionCohortRequest>,
    ) -> Result<Response<pb::Cohort>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let id = v.check("id", c::id(&r.id));
        let expected = v.check("expected_version", c::version(r.expected_version));
        let transition = v.check(
            "transition",
            enum_in!(
                r.transition,
                pb::CohortTransition,
                "COHORT_TRANSITION_",
                CohortTransitionCode
            ),
        );
        all_some!(v; id, expected, transition);
        let transition = match transition {
            CohortTransitionCode::Close => CohortTransition::Close,
            CohortTransitionCode::Reopen => CohortTransition::Reopen,
        };
        let ctx = self
            .write_context(&req, Target::Record(m::RecordKind::Cohort, &id), None)
            .await?;
        let cmd = Command::TransitionCohort {
            id,
            expected_version: expected,
            transition,
        };
        self.state
            .write(cmd, ctx, |r| match r {
                Record::Cohort(x) => Some(c::cohort(x)),
                _ => None,
            })
            .await
    }

    async fn update_patient(&self, req: Request<pb::UpdatePatientRequest>) -> Result<Response<pb::Patient>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let id = v.check("id", c::id(&r.id));
        let expected = v.check("expected_version", c::version(r.expected_version));
        let reason = v.check("reason", c::text(500)(&r.reason));
        let region = match &r.region_code {
            None => Some(None),
            Some(raw) => v.check("region_code", c::optional(raw, c::region)).map(Some),
        };
        let vital_status = v.check(
            "vital_status",
            enum_in_opt!(r.vital_status, pb::VitalStatus, "VITAL_STATUS_", m::VitalStatus),
        );
        let diagnoses = Some(r.diagnoses.as_ref().map(|d| c::diagnoses(&mut v, &d.diagnoses)));
        all_some!(v; id, expected, reason, region, vital_status, diagnoses);
        let ctx = self
            .write_context(&req, Target::Record(m::RecordKind::Patient, &id), None)
            .await?;
        let update = PatientUpdate {
            region,
            vital_status,
            objects_to_reuse: r.objects_to_reuse,
            diagnoses,
        };
        let cmd = Command::UpdatePatient {
            id,
            expected_version: expected,
            update,
            reason,
        };
        self.state
            .write(cmd, ctx, |r| match r {
                Record::Patient(x) => Some(c::patient(x)),
                _ => None,
            })
            .await
    }

    async fn update_adverse_event(
        &self,
        req: Request<pb::UpdateAdverseEventRequest>,
    ) -> Result<Response<pb::AdverseEvent>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let id = v.check("id", c::id(&r.id));
        let expected = v.check("expected_version", c::version(r.expected_version));
        let reason = v.check("reason", c::text(500)(&r.reason));
        let outcome = v.check(
            "outcome",
            enum_in_opt!(r.outcome, pb::AeOutcome, "AE_OUTCOME_", m::AeOutcome),
        );
        let causality = v.check(
            "causality",
            enum_in_opt!(r.causality, pb::Causality, "CAUSALITY_", m::Causality),
        );
        let pv_date = v.check("pv_declaration_date", c::optional(&r.pv_declaration_date, c::date));
        let pv_reference = v.check("pv_reference", c::optional(&r.pv_reference, c::text(100)));
        let pv_declaration = match (pv_date, pv_reference) {
            (Some(Some(d)), Some(Some(r))) => Some(Some((d, r))),
            (Some(None), Some(None)) => Some(None),
            (Some(None), Some(Some(_))) => {
                v.push("pv_declaration_date", "REQUIRED", "is required with pv_reference");
                None
            }
            (Some(Some(_)), Some(None)) => {
                v.push("pv_reference", "REQUIRED", "is required with pv_declaration_date");
                None
            }
            _ => None,
        };
        all_some!(v; id, expected, reason, outcome, causality, pv_declaration);
        let ctx = self
            .write_context(&req, Target::Record(m::RecordKind::AdverseEvent, &id), None)
            .await?;
        let update = AdverseEventUpdate {
            serious: r.serious,
            outcome,
            causality,
            pv_declaration,
        };
        let cmd = Command::UpdateAdverseEvent {
            id,
            expected_version: expected,
            update,
            reason,
        };
        self.state
            .write(cmd, ctx, |r| match r {
                Record::AdverseEvent(x) => Some(c::adverse_event(x)),
                _ => None,
            })
            .await
    }

    async fn get_history(
        &self,
        req: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let r = req.get_ref();
        let kind = enum_in!(r.kind, pb::RecordKind, "RECORD_KIND_", m::RecordKind).map_err(|e| field_err("kind", e))?;
        let store = &self.state.store;
        let (id, admitted) = match kind {
            m::RecordKind::Centre | m::RecordKind::Prescriber | m::RecordKind::Framework => {
                let id = match kind {
                    m::RecordKind::Centre => c::finess(&r.id).map(String::from),
                    m::RecordKind::Prescriber => c::rpps(&r.id).map(String::from),
                    _ => c::id(&r.id).map(String::from),
                }
                .map_err(|e| field_err("id", e))?;
                (id, admit(store, &req, Target::Unbound).await?)
            }
            m::RecordKind::Cohort => {
                let id = c::id(&r.id).map_err(|e| field_err("id", e))?;
                let admitted = admit(store, &req, Target::CohortEntry(&id)).await?;
                (id.into(), admitted)
            }
            _ => {
                let id = c::id(&r.id).map_err(|e| field_err("id", e))?;
                let admitted = admit(store, &req, Target::Record(kind, &id)).await?;
                (id.into(), admitted)
            }
        };
        let versions = store.history(kind, &id).await.map_err(error::store)?;
        if kind.is_patient_level() {
            let targets = versions.iter().map(observatory_store::Record::audit_target).collect();
            admitted.audit_read(store, &req, "GetHistory", targets).await?;
        }
        Ok(Response::new(pb::GetHistoryResponse {
            versions: versions.iter().map(c::history_entry).collect(),
        }))
    }
}
